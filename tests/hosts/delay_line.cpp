// delay_line: a network link with a fixed delay between two network namespaces, for the
// two-host test. It creates a TUN device named tun0 in each namespace and carries every packet
// from one to the other DELAY_MS milliseconds after it was sent, in both directions, in order.
// (tc netem does this in the kernel; the kernels the tests run on may not have sch_netem.)
// The devices vanish when the process ends. Once both exist it prints "ready" on stdout.
//
//   delay_line NAMESPACE_A NAMESPACE_B DELAY_MS
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "delay_line: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

// Opens a TUN device named tun0 in network namespace `ns` (ip netns's /run/netns/NS).
int open_tun(const std::string& ns) {
  const std::string path = "/run/netns/" + ns;
  const int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) die("open " + path);
  if (setns(nsfd, CLONE_NEWNET) != 0) die("setns " + path);
  close(nsfd);
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) die("open /dev/net/tun");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, "tun0", IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) die("TUNSETIFF tun0 in " + ns);
  return fd;
}

struct Packet {
  Clock::time_point due;
  std::vector<char> bytes;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: delay_line NAMESPACE_A NAMESPACE_B DELAY_MS\n");
    return 2;
  }
  const auto delay = std::chrono::milliseconds(std::atol(argv[3]));
  const int fd[2] = {open_tun(argv[1]), open_tun(argv[2])};
  std::printf("ready\n");
  std::fflush(stdout);

  std::deque<Packet> queue[2];  // queue[i]: read from fd[i], to be written to fd[1 - i]
  std::vector<char> buf(65536);
  for (;;) {
    // Sleep until a packet arrives or the next one is due.
    int wait_ms = -1;
    const auto now = Clock::now();
    for (const auto& q : queue)
      if (!q.empty()) {
        const auto ms = std::chrono::ceil<std::chrono::milliseconds>(q.front().due - now).count();
        const int w = ms < 0 ? 0 : static_cast<int>(ms);
        wait_ms = wait_ms < 0 ? w : std::min(wait_ms, w);
      }
    pollfd p[2] = {{fd[0], POLLIN, 0}, {fd[1], POLLIN, 0}};
    if (poll(p, 2, wait_ms) < 0 && errno != EINTR) die("poll");
    for (int i = 0; i < 2; ++i) {
      if (!(p[i].revents & POLLIN)) continue;
      for (;;) {  // everything that is there now
        const ssize_t n = read(fd[i], buf.data(), buf.size());
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) die("read");
        queue[i].push_back({Clock::now() + delay, std::vector<char>(buf.data(), buf.data() + n)});
      }
    }
    const auto t = Clock::now();
    for (int i = 0; i < 2; ++i)
      while (!queue[i].empty() && queue[i].front().due <= t) {
        const auto& b = queue[i].front().bytes;
        // A full queue on the other side drops the packet, as a link would; TCP resends it.
        if (write(fd[1 - i], b.data(), b.size()) < 0 && errno != EAGAIN && errno != ENOBUFS &&
            errno != EIO)
          die("write");
        queue[i].pop_front();
      }
  }
}
