// compare_safetensors: checks that two safetensors files hold the same tensors (same names
// and shapes) and that their values agree, either bit for bit or within a float32 bound from
// rounding-error analysis (tests/common/tolerance.h). Prints each tensor's worst difference.
//
//   compare_safetensors GOT WANT --exact [--subset]
//   compare_safetensors GOT WANT --rel R [--base INIT] [--subset]
//
// --exact: every element equal (two runs that do the same arithmetic in the same order).
// --rel R: |got − want| ≤ R·(|want| + RMS(want)) per element, RMS over the tensor.
// --base INIT: compare the change from INIT instead (got − init against want − init), for
//   weights after training: rounding enters only through the updates, so the bound is
//   relative to the size of the change, not of the weights.
// --subset: GOT may hold tensors that WANT leaves out (a golden file that skips a large
//   tensor); they are not compared.
#include <smp/smp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>

namespace {

std::string shape_str(const smp::Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}

int usage() {
  std::fprintf(stderr,
               "usage: compare_safetensors GOT WANT (--exact | --rel R [--base INIT]) "
               "[--subset]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 4) return usage();
  bool exact = false, subset = false;
  double rel = -1;
  std::string base_path;
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--exact") {
      exact = true;
    } else if (a == "--subset") {
      subset = true;
    } else if (a == "--rel" && i + 1 < argc) {
      char* end = nullptr;
      rel = std::strtod(argv[++i], &end);
      if (*end || !(rel >= 0)) return usage();
    } else if (a == "--base" && i + 1 < argc) {
      base_path = argv[++i];
    } else {
      return usage();
    }
  }
  if (exact == (rel >= 0) || (exact && !base_path.empty())) return usage();

  auto got = smp::load_safetensors(argv[1]);
  auto want = smp::load_safetensors(argv[2]);
  std::map<std::string, smp::Tensor> base;
  if (!base_path.empty()) base = smp::load_safetensors(base_path);
  bool ok = true;
  for (const auto& [name, w] : want) {
    if (!got.count(name)) {
      std::printf("%-16s missing from %s\n", name.c_str(), argv[1]);
      ok = false;
    }
  }
  double worst_used = 0;
  for (const auto& [name, g] : got) {
    auto it = want.find(name);
    if (it == want.end()) {
      std::printf("%-16s not in %s%s\n", name.c_str(), argv[2], subset ? " (not compared)" : "");
      ok = ok && subset;
      continue;
    }
    if (g.sizes() != it->second.sizes()) {
      std::printf("%-16s shape %s, expected %s\n", name.c_str(), shape_str(g.sizes()).c_str(),
                  shape_str(it->second.sizes()).c_str());
      ok = false;
      continue;
    }
    auto gv = g.to_vector<double>(), wv = it->second.to_vector<double>();
    if (!base.empty()) {
      auto b = base.find(name);
      if (b == base.end() || b->second.sizes() != g.sizes()) {
        std::printf("%-16s not in %s with this shape\n", name.c_str(), base_path.c_str());
        ok = false;
        continue;
      }
      auto bv = b->second.to_vector<double>();
      for (size_t i = 0; i < gv.size(); ++i) gv[i] -= bv[i], wv[i] -= bv[i];
    }
    double sq = 0;
    for (double x : wv) sq += x * x;
    const double scale = wv.empty() ? 0 : std::sqrt(sq / static_cast<double>(wv.size()));
    double max_abs = 0, used = 0;
    int64_t bad = 0;
    for (size_t i = 0; i < gv.size(); ++i) {
      const double d = std::abs(gv[i] - wv[i]);
      const bool same_nan = std::isnan(gv[i]) && std::isnan(wv[i]);
      if (same_nan) continue;
      max_abs = std::max(max_abs, std::isnan(d) ? INFINITY : d);
      const double bound = exact ? 0 : rel * (std::abs(wv[i]) + scale);
      if (!(d <= bound)) ++bad;
      if (bound > 0) used = std::max(used, d / bound);
    }
    worst_used = std::max(worst_used, used);
    if (exact)
      std::printf("%-16s max |diff| %.3e  %lld of %zu differ\n", name.c_str(), max_abs,
                  static_cast<long long>(bad), gv.size());
    else
      std::printf("%-16s max |diff| %.3e  RMS %.3e  %.3f of the bound  %lld of %zu outside\n",
                  name.c_str(), max_abs, scale, used, static_cast<long long>(bad), gv.size());
    ok = ok && bad == 0;
  }
  if (exact)
    std::printf("%s (bit for bit)\n", ok ? "MATCH" : "MISMATCH");
  else
    std::printf("%s (|diff| <= %g·(|x| + RMS)%s; worst %.3f of the bound)\n",
                ok ? "MATCH" : "MISMATCH", rel, base.empty() ? "" : ", x = change from base",
                worst_used);
  return ok ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "compare_safetensors: %s\n", e.what());
  return 2;
}
