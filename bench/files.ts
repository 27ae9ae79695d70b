/**
 * File-level restore and the guest file index, measured through the library code the API and the backup hook use.
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/files.ts [listing|download|index ...]
 * Sizes: FILES (100,000 entries in one folder), DOWNLOAD_MIB (1024), INDEX_FILES (1,000,000) and INDEX_FILE_BYTES (0) from the
 * environment.
 *  - listing: one folder of FILES empty files on ext4 (mke2fs -d) and on NTFS (mkntfs, filled through ntfs-3g's
 *    FUSE driver, no kernel mount), each backed up into a local repository; then the in-thread path (the offline
 *    CLI's, and the API's before browse sessions ran on worker threads): open the point (FileBrowser over
 *    repository disks, cold) and the first page of 100 entries sorted by name, plus the unsorted first page, with
 *    the event loop's longest stall and utilisation (perf_hooks) while listing; then the same through the API's
 *    path, `ThreadedFileBrowser` of the compiled library (dist/): parsing on a worker thread, with this thread's
 *    event-loop utilisation and the process RSS the worker adds.
 *  - download: one DOWNLOAD_MIB file of random bytes on ext4, backed up; read whole through readFileRange (the
 *    API's download stream) from a freshly opened point: MB/s, checked by SHA-256 afterwards (untimed).
 *  - index: INDEX_FILES files of INDEX_FILE_BYTES random bytes (empty by default: the worst case, where the backup
 *    is cheapest) in folders of 1000 on ext4; the backup of the image into an encrypted
 *    repository (write + commit) against indexing that point (`indexPoint`, what the backup hook runs): times,
 *    ratio, pages and stored index bytes; then the same on a worker thread as the backup hook runs it (compiled
 *    library from dist/, opened with the unwrapped keys).
 * EXT4_IMAGE / NTFS_IMAGE / INDEX_IMAGE reuse an image made before (making them takes minutes; KEEP=1 keeps them).
 * Work folder: BENCH_DIR or the OS temp folder; removed afterwards unless KEEP=1. Prints the load average.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { FileSystem } from '@vmkeep/filesystems';
import { FileIndexStore, INDEX_DISK, indexPoint } from '@vmkeep/file-index';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { FileBrowser } from '../libs/restore/src/files/browser';
import { readFileRange } from '../libs/restore/src/files/file-stream';
import { withNtfsMount } from '../test/peers/ntfs-images';
import { writeImagePoint } from '../test/peers/repository-points';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const FILES = Number(process.env.FILES ?? 100_000);
const DOWNLOAD_MIB = Number(process.env.DOWNLOAD_MIB ?? 1024);
const INDEX_FILES = Number(process.env.INDEX_FILES ?? 1_000_000);
const INDEX_FILE_BYTES = Number(process.env.INDEX_FILE_BYTES ?? 0);
const PASSPHRASE = 'bench-passphrase';

const load = () => loadavg().map((n) => n.toFixed(2)).join(' ');
const seconds = (ns: bigint) => Number(ns) / 1e9;

/**
 * Wall seconds and CPU seconds of this process (all threads: the repository's decode workers too). On a loaded
 * machine the CPU time is the better estimate of the wall time on an idle one.
 */
async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; s: number; cpu: number }> {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(cpu);
  return { value, s: seconds(process.hrtime.bigint() - start), cpu: (used.user + used.system) / 1e6 };
}

/** The event loop's longest delay over `ms` while doing nothing: what the machine's load alone causes. */
async function baselineStall(ms = 2000): Promise<number> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  await new Promise((r) => setTimeout(r, ms));
  delay.disable();
  return delay.max / 1e6;
}

/** Creates `count` empty files named file-000000.txt… under `dir`, `parallel` at a time. */
/** `count` files named by `name`, each of `bytes` random bytes (empty by default). */
async function makeFiles(dir: string, count: number, name: (i: number) => string, parallel = 64, bytes = 0): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const file = path.join(dir, name(i));
      const content = bytes ? randomBytes(bytes) : '';
      await fs.writeFile(file, content).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        await fs.mkdir(path.dirname(file), { recursive: true });
        await fs.writeFile(file, content);
      });
    }
  };
  await fs.mkdir(dir, { recursive: true });
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** Backs a raw image up into a new repository; returns the repository, point id and seconds taken. */
async function backUp(image: string, repoDir: string, encrypt = false) {
  const repo = encrypt
    ? await Repository.init(repoDir, { encrypt: true, kdf: 'insecure-fast-for-tests' }, { passphrase: PASSPHRASE })
    : await Repository.init(repoDir);
  const { value: pointId, s, cpu } = await timed(() => writeImagePoint(repo, { 'disk-2000': image }, { vm: 'bench' }));
  return { repo, pointId, s, cpu };
}

/** The in-thread browse path on a freshly opened repository: FileBrowser over the point's disks. */
async function openBrowser(repoDir: string, pointId: string, encrypted = false): Promise<FileBrowser> {
  const repo = await Repository.open(repoDir, encrypted ? { passphrase: PASSPHRASE } : {});
  return FileBrowser.open([{ key: 'disk-2000', disk: await repo.openDisk(pointId, 'disk-2000') }]);
}

/**
 * The listings both browse paths are measured on: the first 100 of /big sorted by name (with this thread's event
 * loop utilisation and longest stall meanwhile), the same again, and the first 100 unsorted; checks the first.
 */
async function measureListings(kind: string, browser: Pick<FileBrowser, 'volumes' | 'list'>) {
  const volume = browser.volumes.findIndex((v) => v.fileSystem);
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const loop = performance.eventLoopUtilization();
  const sorted = await timed(() => browser.list(volume, '/big', { sort: 'name', limit: 100 }));
  const utilization = performance.eventLoopUtilization(loop).utilization;
  delay.disable();
  const again = await timed(() => browser.list(volume, '/big', { sort: 'name', limit: 100 }));
  const unsorted = await timed(() => browser.list(volume, '/big', { limit: 100 }));
  checkListing(kind, sorted.value);
  return { sorted, again, unsorted, utilization, stallMs: delay.max / 1e6 };
}

async function listingOn(kind: string, work: string, image: string): Promise<void> {
  const { repo, pointId, s } = await backUp(image, path.join(work, `repo-${kind}`));
  await repo.close();
  console.log(`  ${kind}: backed up in ${s.toFixed(2)} s`);
  const opened = await timed(() => openBrowser(path.join(work, `repo-${kind}`), pointId));
  const browser = opened.value;
  try {
    const { sorted, again, unsorted, utilization, stallMs } = await measureListings(kind, browser);
    console.log(
      `  ${kind} in this thread: open ${opened.s.toFixed(3)} s; first 100 sorted by name (reads all ${FILES}) ${sorted.s.toFixed(3)} s ` +
        `(CPU ${sorted.cpu.toFixed(3)} s; event loop busy ${(100 * utilization).toFixed(0)} %, longest stall ${stallMs.toFixed(1)} ms, idle baseline ${(await baselineStall()).toFixed(1)} ms), ` +
        `again ${again.s.toFixed(3)} s (CPU ${again.cpu.toFixed(3)} s); unsorted first 100 ${unsorted.s.toFixed(3)} s; load ${load()}`,
    );
  } finally {
    await browser.close();
  }
  await threadedListingOn(kind, path.join(work, `repo-${kind}`), pointId);
}

function checkListing(kind: string, page: { total: number | null; entries: { name: string }[] }): void {
  const first = page.entries.map((e) => e.name);
  if (page.total !== FILES || first[0] !== 'file-000000.txt' || first[99] !== 'file-000099.txt') {
    throw new Error(`${kind}: wrong listing: total ${page.total}, first ${first[0]}, 100th ${first[99]}`);
  }
}

/** The compiled `ThreadedFileBrowser` (dist/), or undefined when nothing is built. */
async function compiledThreadedBrowser(): Promise<typeof import('../libs/restore/src/files/threaded-browser') | undefined> {
  const compiled = path.join(__dirname, '..', 'dist', 'libs', 'restore', 'src', 'files', 'threaded-browser.js');
  if (!(await fs.stat(compiled).catch(() => undefined))) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(compiled) as typeof import('../libs/restore/src/files/threaded-browser');
}

/**
 * The API's browse path: a `ThreadedFileBrowser` of the compiled library (dist/, `node scripts/build.js`; under
 * ts-node the worker would first compile its sources) opens the point on a worker thread; this thread only waits.
 * Reports what this thread's event loop did meanwhile and the RSS the worker adds (its isolate, repository and
 * read caches), measured after the listing and after closing.
 */
async function threadedListingOn(kind: string, repoDir: string, pointId: string): Promise<void> {
  const lib = await compiledThreadedBrowser();
  if (!lib) {
    console.log(`  ${kind} on a worker thread: skipped (no dist/: run \`node scripts/build.js\` first)`);
    return;
  }
  const rssBefore = process.memoryUsage().rss;
  const opened = await timed(() => lib.ThreadedFileBrowser.open({ repository: { location: repoDir }, pointId, diskKeys: ['disk-2000'] }));
  const browser = opened.value;
  let rssOpen: number;
  try {
    const { sorted, again, unsorted, utilization, stallMs } = await measureListings(kind, browser);
    rssOpen = process.memoryUsage().rss;
    console.log(
      `  ${kind} on a worker thread: open ${opened.s.toFixed(3)} s (CPU ${opened.cpu.toFixed(3)} s); first 100 sorted by name ${sorted.s.toFixed(3)} s ` +
        `(CPU ${sorted.cpu.toFixed(3)} s, all threads; this thread's event loop busy ${(100 * utilization).toFixed(1)} %, longest stall ${stallMs.toFixed(1)} ms), ` +
        `again ${again.s.toFixed(3)} s (CPU ${again.cpu.toFixed(3)} s); unsorted first 100 ${unsorted.s.toFixed(3)} s; load ${load()}`,
    );
  } finally {
    await browser.close();
  }
  await new Promise((r) => setTimeout(r, 500));
  const mb = (n: number) => (n / 1e6).toFixed(0);
  console.log(`  ${kind} worker RSS: +${mb(rssOpen - rssBefore)} MB while open (after the listings), +${mb(process.memoryUsage().rss - rssBefore)} MB after closing`);
}

/**
 * An ext4 image whose /big folder holds `count` empty files. `mke2fs -d` adds folder entries by scanning the whole
 * (linear) folder each time — quadratic, many minutes for 100,000 — so it makes the first 2000, `e2fsck -fD`
 * turns /big into an htree folder, and debugfs adds the rest (it inserts into an htree folder by hash).
 */
async function bigExtFolder(work: string, tree: string, image: string, count: number, name: (i: number) => string): Promise<void> {
  const first = Math.min(count, 2000);
  await makeFiles(path.join(tree, 'big'), first, name);
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-N', String(count + 4096), '-d', tree, image, `${64 + Math.ceil(count / 400)}M`]);
  await run('e2fsck', ['-fyD', image]).catch(() => undefined); // exit 1: "file system modified" (the folder indexed)
  const commands = ['cd /big'];
  for (let i = first; i < count; i++) commands.push(`write /dev/null ${name(i)}`);
  const script = path.join(work, 'debugfs-commands');
  await fs.writeFile(script, commands.join('\n') + '\n');
  await run('debugfs', ['-w', '-f', script, image], { maxBuffer: 256 * MiB });
}

async function listing(work: string): Promise<void> {
  console.log(`listing: ${FILES} files in one folder (load ${load()})`);
  const tree = path.join(work, 'tree-listing');
  const name = (i: number) => `file-${String(i).padStart(6, '0')}.txt`;
  let ext = process.env.EXT4_IMAGE;
  if (!ext) {
    ext = path.join(work, 'listing-ext4.img');
    const built = await timed(() => bigExtFolder(work, tree, ext!, FILES, name));
    console.log(`  ext4: image made in ${built.s.toFixed(1)} s`);
  }
  await listingOn('ext4', work, ext);

  let ntfs = process.env.NTFS_IMAGE;
  if (!ntfs) {
    ntfs = path.join(work, 'listing-ntfs.img');
    await fs.writeFile(ntfs, '');
    await fs.truncate(ntfs, (64 + Math.ceil(FILES / 200)) * MiB);
    await run('mkntfs', ['-F', '-Q', '-q', '-L', 'bench', ntfs]);
    const filled = await timed(() => withNtfsMount(ntfs!, (mnt) => makeFiles(path.join(mnt, 'big'), FILES, name, 8)));
    console.log(`  ntfs: filled through ntfs-3g in ${filled.s.toFixed(1)} s`);
  }
  await listingOn('ntfs', work, ntfs);
}

async function download(work: string): Promise<void> {
  console.log(`download: one ${DOWNLOAD_MIB} MiB file (load ${load()})`);
  const tree = path.join(work, 'tree-download');
  await fs.mkdir(tree, { recursive: true });
  const source = path.join(tree, 'big.bin');
  const h = await fs.open(source, 'w');
  const hash = createHash('sha256');
  for (let i = 0; i < DOWNLOAD_MIB; i++) {
    const piece = randomBytes(MiB);
    hash.update(piece);
    await h.write(piece);
  }
  await h.close();
  const expected = hash.digest('hex');
  const image = path.join(work, 'download-ext4.img');
  await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', tree, image, `${DOWNLOAD_MIB + 128}M`]);
  await fs.rm(tree, { recursive: true });
  const { repo, pointId, s } = await backUp(image, path.join(work, 'repo-download'));
  await repo.close();
  await fs.rm(image);
  console.log(`  backed up in ${s.toFixed(2)} s`);
  const repoDir = path.join(work, 'repo-download');
  const threaded = await compiledThreadedBrowser();
  type Open = () => Promise<{ fileSystem(vol: number): FileSystem; close(): Promise<void> }>;
  const ways: [string, Open][] = [['in this thread', () => openBrowser(repoDir, pointId)]];
  if (threaded) {
    ways.push(['on a worker thread (the API path)', () => threaded.ThreadedFileBrowser.open({ repository: { location: repoDir }, pointId, diskKeys: ['disk-2000'] })]);
  }
  if (!threaded) console.log('  on a worker thread: skipped (no dist/: run `node scripts/build.js` first)');
  for (const [way, open] of ways) for (const pass of [1, 2]) {
    const browser = await open();
    try {
      const handle = await browser.fileSystem(0).open('/big.bin');
      const read = await timed(async () => {
        let bytes = 0;
        for await (const piece of readFileRange(handle, 0, handle.size)) bytes += piece.length;
        return bytes;
      });
      console.log(
        `  ${way}, pass ${pass}: ${read.value} bytes in ${read.s.toFixed(2)} s = ${(read.value / read.s / 1e6).toFixed(0)} MB/s ` +
          `(CPU ${read.cpu.toFixed(2)} s = ${(read.value / read.cpu / 1e6).toFixed(0)} MB per CPU second; load ${load()})`,
      );
    } finally {
      await browser.close();
    }
  }
  const browser = await openBrowser(path.join(work, 'repo-download'), pointId);
  try {
    const handle = await browser.fileSystem(0).open('/big.bin');
    const check = createHash('sha256');
    for await (const piece of readFileRange(handle, 0, handle.size)) check.update(piece);
    console.log(`  content ${check.digest('hex') === expected ? 'equal' : 'DIFFERENT'} (SHA-256)`);
  } finally {
    await browser.close();
  }
}

async function index(work: string): Promise<void> {
  let image = process.env.INDEX_IMAGE;
  console.log(`index: ${image ? image : `${INDEX_FILES} files of ${INDEX_FILE_BYTES} bytes in folders of 1000`} (load ${load()})`);
  if (!image) {
    const tree = path.join(work, 'tree-index');
    const made = await timed(() =>
      makeFiles(tree, INDEX_FILES, (i) => `dir-${String(Math.floor(i / 1000)).padStart(4, '0')}/file-${String(i).padStart(7, '0')}.dat`, 64, INDEX_FILE_BYTES),
    );
    console.log(`  host tree in ${made.s.toFixed(1)} s`);
    image = path.join(work, 'index-ext4.img');
    const args = ['-q', '-F', '-t', 'ext4', '-N', String(INDEX_FILES + 10_000), '-d', tree, image, `${256 + Math.ceil(INDEX_FILES / 2500) + Math.ceil((INDEX_FILES * Math.ceil(INDEX_FILE_BYTES / 4096) * 4096 * 1.05) / MiB)}M`];
    const mkfs = await timed(() => run('mke2fs', args));
    console.log(`  mke2fs -d in ${mkfs.s.toFixed(1)} s`);
    await fs.rm(tree, { recursive: true });
  }
  const repoDir = path.join(work, 'repo-index');
  const { repo, pointId, s: backupS, cpu: backupCpu } = await backUp(image, repoDir, true);
  const size = (await fs.stat(image)).size;
  console.log(`  backup (encrypted repository) of the ${(size / MiB).toFixed(0)} MiB image: ${backupS.toFixed(2)} s (CPU ${backupCpu.toFixed(2)} s; load ${load()})`);
  const disk = await repo.openDisk(pointId, 'disk-2000', INDEX_DISK);
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const indexed = await timed(() => indexPoint(FileIndexStore.forRepository(repo), pointId, [{ key: 'disk-2000', disk }]));
  delay.disable();
  await disk.close();
  const { record, newBytes } = indexed.value;
  console.log(
    `  index: ${record.entries} entries, ${record.pages.length} pages, ${(newBytes / 1e6).toFixed(1)} MB stored, ` +
      `${indexed.s.toFixed(2)} s (CPU ${indexed.cpu.toFixed(2)} s) = ${((100 * indexed.s) / backupS).toFixed(0)} % of the backup ` +
      `(${((record.entries / indexed.s) | 0)} entries/s; longest event-loop stall ${(delay.max / 1e6).toFixed(1)} ms, ` +
      `idle baseline ${(await baselineStall()).toFixed(1)} ms; load ${load()})`,
  );
  await indexOnWorker(repo, repoDir, pointId, backupS);
  await repo.close();
}

/**
 * What the backup hook runs: `indexPointInWorker` of the compiled library (dist/, `node scripts/build.js`; under
 * ts-node the worker would first compile its sources), opened with the repository's unwrapped keys (no KDF), after
 * the index written above is collected so every page is stored again.
 */
async function indexOnWorker(repo: Repository, repoDir: string, pointId: string, backupS: number): Promise<void> {
  const compiled = path.join(__dirname, '..', 'dist', 'node_modules', '@vmkeep', 'file-index');
  const built = await fs.stat(path.join(compiled, 'package.json')).catch(() => undefined);
  if (!built) {
    console.log('  index on a worker thread: skipped (no dist/: run `node scripts/build.js` first)');
    return;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = require(compiled) as typeof import('@vmkeep/file-index');
  await FileIndexStore.forRepository(repo).collectGarbage([], { graceMs: 0 });
  const opening = { location: repoDir, runtime: { unlockedKeys: repo.unlockedKeys() } };
  const run1 = await timed(() => lib.indexPointInWorker(opening, pointId, ['disk-2000']));
  const { record, newBytes } = run1.value;
  console.log(
    `  index on a worker thread (the backup hook): ${record.entries} entries, ${(newBytes / 1e6).toFixed(1)} MB stored, ` +
      `${run1.s.toFixed(2)} s (CPU ${run1.cpu.toFixed(2)} s, all threads) = ${((100 * run1.s) / backupS).toFixed(0)} % of the backup; load ${load()}`,
  );
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const work = await fs.mkdtemp(path.join(process.env.BENCH_DIR ?? tmpdir(), 'vmkeep-bench-files-'));
  console.log(`work folder ${work}; load ${load()}`);
  try {
    if (!only.length || only.includes('listing')) await listing(work);
    if (!only.length || only.includes('download')) await download(work);
    if (!only.length || only.includes('index')) await index(work);
  } finally {
    await closeSharedChunkWorkers();
    if (process.env.KEEP !== '1') await fs.rm(work, { recursive: true, force: true });
  }
  console.log(`load ${load()}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
