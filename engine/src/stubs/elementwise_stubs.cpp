// TEMPORARY: placeholders for the elementwise ops until they are implemented; delete this
// file once every function below has a real definition.
#include <smp/engine/tensor.h>

namespace smp {

Tensor& Tensor::add_(const Tensor& other, const Scalar& alpha) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::add_(const Scalar& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::sub_(const Tensor& other, const Scalar& alpha) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::sub_(const Scalar& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::mul_(const Tensor& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::mul_(const Scalar& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::div_(const Tensor& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::div_(const Scalar& other) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::addcmul_(const Tensor& t1, const Tensor& t2, const Scalar& value) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::addcdiv_(const Tensor& t1, const Tensor& t2, const Scalar& value) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::sqrt_() { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& Tensor::clamp_(std::optional<Scalar> min, std::optional<Scalar> max) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::add(const Tensor& other, const Scalar& alpha) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::add(const Scalar& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::sub(const Tensor& other, const Scalar& alpha) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::sub(const Scalar& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::mul(const Tensor& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::mul(const Scalar& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::div(const Tensor& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::div(const Scalar& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::neg() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::exp() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::log() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::sqrt() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::rsqrt() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::abs() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::square() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::pow(const Scalar& exponent) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::clamp(std::optional<Scalar> min, std::optional<Scalar> max) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::clamp_min(const Scalar& min) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::clamp_max(const Scalar& max) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::maximum(const Tensor& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::minimum(const Tensor& other) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::relu() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::sigmoid() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::tanh() const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::gelu(const std::string& approximate) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::eq(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::eq(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::ne(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::ne(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::lt(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::lt(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::le(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::le(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::gt(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::gt(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::ge(const Tensor& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor Tensor::ge(const Scalar& o) const { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator+(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator-(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator*(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator/(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator+(const Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator-(const Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator*(const Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator/(const Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator+(const Scalar& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator-(const Scalar& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator*(const Scalar& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator/(const Scalar& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor operator-(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator+=(Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator-=(Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator*=(Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator/=(Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator+=(Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator-=(Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator*=(Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor& operator/=(Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor add(const Tensor& a, const Tensor& b, const Scalar& alpha) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor sub(const Tensor& a, const Tensor& b, const Scalar& alpha) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor mul(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor div(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor neg(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor exp(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor log(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor sqrt(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor rsqrt(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor abs(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor pow(const Tensor& a, const Scalar& exponent) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor clamp(const Tensor& a, std::optional<Scalar> min, std::optional<Scalar> max) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor maximum(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor minimum(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor relu(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor sigmoid(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor tanh(const Tensor& a) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor gelu(const Tensor& a, const std::string& approximate) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor where(const Tensor& cond, const Tensor& a, const Scalar& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor where(const Tensor& cond, const Scalar& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor eq(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor ne(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor lt(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor le(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor gt(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }
Tensor ge(const Tensor& a, const Tensor& b) { SMP_ERROR("elementwise op not implemented yet"); }

}  // namespace smp
