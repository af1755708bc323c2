// Preloaded into each server process the benchmark starts (raw and Herald alike, with --expose-gc), so
// memory is read after the same full collection in both: on SIGUSR2, collect garbage and print
// process.memoryUsage() as one `[bench-memory] {...}` line on stderr. Nothing else is touched.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  globalThis.gc?.();
  process.stderr.write(`[bench-memory] ${JSON.stringify(process.memoryUsage())}\n`);
});
