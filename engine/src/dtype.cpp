#include <smp/engine/dtype.h>
#include <smp/engine/error.h>
#include <smp/engine/scalar.h>

namespace smp {

namespace {
Dtype g_default_dtype = kFloat32;
}

size_t element_size(Dtype t) {
  switch (t) {
    case Dtype::Float64:
    case Dtype::Int64: return 8;
    case Dtype::Float32:
    case Dtype::Int32: return 4;
    case Dtype::Float16:
    case Dtype::BFloat16: return 2;
    case Dtype::UInt8:
    case Dtype::Bool: return 1;
  }
  return 0;
}

const char* dtype_name(Dtype t) {
  switch (t) {
    case Dtype::Float32: return "float32";
    case Dtype::Float64: return "float64";
    case Dtype::Float16: return "float16";
    case Dtype::BFloat16: return "bfloat16";
    case Dtype::Int64: return "int64";
    case Dtype::Int32: return "int32";
    case Dtype::UInt8: return "uint8";
    case Dtype::Bool: return "bool";
  }
  return "?";
}

const char* safetensors_name(Dtype t) {
  switch (t) {
    case Dtype::Float32: return "F32";
    case Dtype::Float64: return "F64";
    case Dtype::Float16: return "F16";
    case Dtype::BFloat16: return "BF16";
    case Dtype::Int64: return "I64";
    case Dtype::Int32: return "I32";
    case Dtype::UInt8: return "U8";
    case Dtype::Bool: return "BOOL";
  }
  return "?";
}

bool is_floating_point(Dtype t) {
  return t == kFloat32 || t == kFloat64 || t == kFloat16 || t == kBFloat16;
}

bool is_integral(Dtype t, bool include_bool) {
  return t == kInt64 || t == kInt32 || t == kUInt8 || (include_bool && t == kBool);
}

Dtype promote_types(Dtype a, Dtype b) {
  if (a == b) return a;
  // torch.promote_types over our 8 types; rows/cols in enum order:
  // f32 f64 f16 bf16 i64 i32 u8 b
  static constexpr Dtype f4 = kFloat32, f8 = kFloat64, f2 = kFloat16, bf = kBFloat16,
                         i8 = kInt64, i4 = kInt32, u1 = kUInt8, b1 = kBool;
  static constexpr Dtype table[kNumDtypes][kNumDtypes] = {
      /* f32 */ {f4, f8, f4, f4, f4, f4, f4, f4},
      /* f64 */ {f8, f8, f8, f8, f8, f8, f8, f8},
      /* f16 */ {f4, f8, f2, f4, f2, f2, f2, f2},
      /* bf16*/ {f4, f8, f4, bf, bf, bf, bf, bf},
      /* i64 */ {f4, f8, f2, bf, i8, i8, i8, i8},
      /* i32 */ {f4, f8, f2, bf, i8, i4, i4, i4},
      /* u8  */ {f4, f8, f2, bf, i8, i4, u1, u1},
      /* bool*/ {f4, f8, f2, bf, i8, i4, u1, b1},
  };
  return table[static_cast<int>(a)][static_cast<int>(b)];
}

Dtype default_dtype() { return g_default_dtype; }

void set_default_dtype(Dtype t) {
  SMP_CHECK(t == kFloat32 || t == kFloat64, "set_default_dtype: expected float32 or float64, got {}",
            dtype_name(t));
  g_default_dtype = t;
}

Dtype Scalar::natural_dtype() const {
  switch (kind_) {
    case Kind::Float: return default_dtype();
    case Kind::Int: return kInt64;
    case Kind::Bool: return kBool;
  }
  return kFloat32;
}

Dtype result_type(Dtype t, const Scalar& s) {
  // A wrapped number only matters when it is of a higher category than the tensor.
  auto category = [](Dtype d) { return d == kBool ? 0 : is_integral(d) ? 1 : 2; };
  int sc = s.is_bool() ? 0 : s.is_integral() ? 1 : 2;
  if (sc > category(t)) return sc == 2 ? default_dtype() : kInt64;
  return t;
}

}  // namespace smp
