/** A u64 LE as a number; NaN when it does not fit in 2^53 (callers refuse it). All-ones gives Infinity. */
export function readU64(buf: Buffer, at: number): number {
  const lo = buf.readUInt32LE(at);
  const hi = buf.readUInt32LE(at + 4);
  if (lo === 0xffffffff && hi === 0xffffffff) return Infinity;
  if (hi > 0x1fffff) return NaN;
  return hi * 2 ** 32 + lo;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0 && n <= 2 ** 30;
}
