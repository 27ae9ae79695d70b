import type { Disk, Extent } from '@vmkeep/disk';

/** Bytes read at once by the exporters (one repository chunk at the default chunk size). */
export const EXPORT_READ_SIZE = 1024 * 1024;

/** `ranges` cut into reads of at most `readSize` bytes, aligned to `readSize` after the first one. */
export function* readsOf(ranges: Iterable<Extent>, readSize = EXPORT_READ_SIZE): Generator<Extent> {
  for (const r of ranges) {
    const end = r.offset + r.length;
    for (let offset = r.offset; offset < end; ) {
      const length = Math.min(readSize - (offset % readSize), end - offset);
      yield { offset, length };
      offset += length;
    }
  }
}

/**
 * Reads `requests` from `disk` in order with one read in flight ahead of the consumer. A read error surfaces
 * when its data is due; stopping early leaves no unhandled rejection behind.
 */
export async function* readAhead(disk: Disk, requests: Iterable<Extent>): AsyncGenerator<{ offset: number; data: Buffer }> {
  const it = requests[Symbol.iterator]();
  const start = (): { offset: number; data: Promise<Buffer> } | undefined => {
    const next = it.next();
    if (next.done) return undefined;
    const data = disk.read(next.value.offset, next.value.length);
    data.catch(() => undefined);
    return { offset: next.value.offset, data };
  };
  let pending = start();
  while (pending) {
    const data = await pending.data;
    const offset = pending.offset;
    pending = start();
    yield { offset, data };
  }
}
