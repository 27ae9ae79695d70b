/**
 * Buffers a disk source got back through Disk.release, kept for later reads of the same length. Only buffers that
 * are a whole ArrayBuffer are kept (a view may share its memory with something else), and at most `max` of them.
 */
export class SpareBuffers {
  private readonly spares: Buffer[] = [];

  constructor(private readonly max = 8) {}

  /** A kept buffer of exactly `length` bytes, now the caller's; undefined when there is none. */
  take(length: number): Buffer | undefined {
    const i = this.spares.findIndex((b) => b.length === length);
    return i >= 0 ? this.spares.splice(i, 1)[0] : undefined;
  }

  /** Keeps `buffer` (its giver never touches it again) when it is a whole ArrayBuffer and there is room. */
  give(buffer: Buffer): void {
    if (this.spares.length < this.max && buffer.length > 0 && buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength) {
      this.spares.push(buffer);
    }
  }

  clear(): void {
    this.spares.length = 0;
  }
}
