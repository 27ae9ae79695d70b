/** Indexes one restore point: walk → content-defined pages → store new pages → point record last. */
import { DEFAULT_PAGING, encodePage, PageSplitter, type PagingParams } from './page';
import type { FileIndexStore } from './store';
import type { IndexEntry, PageRef, PointIndexRecord } from './types';
import { walkDisks, type WalkLimits, type WalkReport, type WalkTarget } from './walk';

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

  const flush = async (list: IndexEntry[] | undefined) => {
    if (!list) return;
    const page = encodePage(list, store.sealer);
    if (await store.putPage(page)) {
      result.newPages++;
      result.newBytes += page.data.length;
    } else {
      result.reusedPages++;
    }
    pages.push({ id: page.id, entries: page.entries });
    entries += page.entries;
  };

  for await (const entry of walkDisks(disks, report, { limits: opts.limits, signal: opts.signal })) {
    await flush(splitter.push(entry));
  }
  await flush(splitter.finish());
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
