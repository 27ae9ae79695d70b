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

/** Reads kept in flight ahead of the consumer: enough to keep the repository's chunk loads overlapping. */
export const READ_AHEAD = 4;

/**
 * Reads `requests` from `disk` in order with up to `depth` reads in flight ahead of the consumer (memory: depth
 * reads). A read error surfaces when its data is due; stopping early leaves no unhandled rejection behind.
 */
export async function* readAhead(disk: Disk, requests: Iterable<Extent>, depth = READ_AHEAD): AsyncGenerator<{ offset: number; data: Buffer }> {
  const it = requests[Symbol.iterator]();
  const queue: { offset: number; data: Promise<Buffer> }[] = [];
  const fill = (): void => {
    while (queue.length < depth) {
      const next = it.next();
      if (next.done) return;
      const data = disk.read(next.value.offset, next.value.length);
      data.catch(() => undefined);
      queue.push({ offset: next.value.offset, data });
    }
  };
  fill();
  while (queue.length > 0) {
    const head = queue.shift() as (typeof queue)[number];
    const data = await head.data;
    fill();
    yield { offset: head.offset, data };
  }
}
