// Internal: ReduceOp onto a transport's own reduction, written once for the MPI and NCCL
// communicators.
#pragma once

#include <smp/parallel/comm.h>

namespace smp::detail {

/// A transport's reduction operations (MPI_Op, ncclRedOp_t). `avg` is the transport's own
/// average where it has one (NCCL); MPI passes its sum and divides by the group size after.
template <class Op>
struct TransportOps {
  Op sum;
  Op max;
  Op min;
  Op avg;
};

/// The transport operation for `op` on a tensor of dtype `d` (already through
/// check_reduce_dtype). Bool travels as uint8, where Sum is logical or, which on 0 and 1 is
/// Max; Max (or) and Min (and) need nothing special.
template <class Op>
Op transport_op(Dtype d, ReduceOp op, const TransportOps<Op>& ops) {
  switch (op) {
    case ReduceOp::Sum:
      return d == kBool ? ops.max : ops.sum;
    case ReduceOp::Avg:
      return ops.avg;
    case ReduceOp::Max:
      return ops.max;
    case ReduceOp::Min:
      return ops.min;
  }
  return ops.sum;
}

}  // namespace smp::detail
