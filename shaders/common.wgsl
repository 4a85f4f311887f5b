// Shared by the engine's kernels: the per-submission step parameters.
struct Step {
  rows: u32,        // query rows in this submission (1 for decode, the chunk size in prefill)
  pos0: u32,        // absolute position of row 0
  splits: u32,      // key-axis splits for attention
  keysPerSplit: u32 // keys handled by one split (a multiple of 64)
};
