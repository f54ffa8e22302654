// Writes a tensor's insides directly (the engine's job): refused.
void retag(smp::Tensor& t, int p) {
  t.unsafe_impl()->partition = p;
}
