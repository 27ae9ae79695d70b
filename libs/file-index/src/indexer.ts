/** Indexes one restore point: walk → content-defined pages → store new pages → point record last. */
import { DEFAULT_PAGING, encodePage, PageSplitter, type EncodedPage, type PagingParams } from './page';
import type { FileIndexStore } from './store';
import type { IndexEntry, PageRef, PointIndexRecord } from './types';
import { walkDiskBatches, type WalkLimits, type WalkReport, type WalkTarget } from './walk';

/** Page writes in flight while the walk continues. */
const PAGES_IN_FLIGHT = 32;

export interface IndexPointOptions {
  signal?: AbortSignal;
  limits?: Partial<WalkLimits>;
  paging?: PagingParams;
  /** Clock for `indexedAt` (tests). */
  now?: () => Date;
}

export interface IndexPointResult {
  record: PointIndexRecord;
  /** Pages this point added to the store. */
  newPages: number;
  /** Pages that were already stored (unchanged since an earlier point, or shared with another VM). */
  reusedPages: number;
  /** Compressed bytes of the new pages. */
  newBytes: number;
}

/**
 * Walks every file system of `disks` and stores the point's index. Unreadable or unsupported file systems and
 * folders become warnings in the record; storage errors and cancellation (`signal`) are thrown, and no record
 * is written then (pages already stored are collected later by `FileIndexStore.collectGarbage`).
 */
export async function indexPoint(
  store: FileIndexStore,
  pointId: string,
  disks: readonly WalkTarget[],
  opts: IndexPointOptions = {},
): Promise<IndexPointResult> {
  const report: WalkReport = { volumes: [], warnings: [], partial: false };
  const splitter = new PageSplitter(opts.paging ?? DEFAULT_PAGING);
  const pages: PageRef[] = [];
  const result = { newPages: 0, reusedPages: 0, newBytes: 0 };
  let entries = 0;

  // Pages are stored while the walk goes on, up to PAGES_IN_FLIGHT at a time; the record lists them in walk order.
  const storing: Promise<void>[] = [];
  const store1 = async (page: EncodedPage) => {
    if (await store.putPage(page)) {
      result.newPages++;
      result.newBytes += page.data.length;
    } else {
      result.reusedPages++;
    }
  };
  const flush = async (list: IndexEntry[] | undefined) => {
    if (!list) return;
    const page = encodePage(list, store.sealer);
    pages.push({ id: page.id, entries: page.entries });
    entries += page.entries;
    const stored = store1(page);
    stored.catch(() => undefined); // awaited below; a failure surfaces there
    storing.push(stored);
    if (storing.length >= PAGES_IN_FLIGHT) await storing.shift();
  };

  try {
    for await (const batch of walkDiskBatches(disks, report, { limits: opts.limits, signal: opts.signal })) {
      for (const entry of batch) {
        const full = splitter.push(entry);
        if (full) await flush(full);
      }
    }
    await flush(splitter.finish());
    while (storing.length) await storing.shift();
  } finally {
    await Promise.allSettled(storing); // nothing left writing once this returns or throws
  }
  opts.signal?.throwIfAborted();

  const record: PointIndexRecord = {
    version: 1,
    pointId,
    indexedAt: (opts.now?.() ?? new Date()).toISOString(),
    pages,
    entries,
    volumes: report.volumes,
    warnings: report.warnings.slice(0, 1000),
    partial: report.partial,
  };
  if (report.warnings.length > 1000) record.warnings.push(`… and ${report.warnings.length - 1000} more warnings`);
  await store.putPoint(record);
  return { record, ...result };
}
