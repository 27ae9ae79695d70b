/**
 * Full vs incremental backup through the real CBT path (issue 5): BackupService (libs/backup) with a SQLite
 * database and a local repository backs up a VM of the vCenter simulator (test/vcsim, with QueryChangedDiskAreas)
 * four times: the full, then with nothing changed (the fixed per-job cost), after changing 1 % of the disk's
 * blocks, and after changing 10 % (scattered).
 * A "block" is one repository chunk (the unit an incremental stores anew); each changed block gets one write of
 * 4–64 KiB at a random place inside it, as a guest's scattered writes would. Prints wall time, bytes read and
 * the ratio to the full for each run, the time each phase of the job took (from the job row), and the fixed
 * per-job cost of the snapshot (see below).
 *
 *   npx ts-node -r tsconfig-paths/register --transpile-only bench/incremental.ts [--size 4G] [--chunk-size 1M] [--verify]
 *
 * --size: the disk (default 4 GiB; K/M/G suffixes). 3/4 of it is pseudo-random data, 1/4 zeros (free space).
 * --verify: restore the last point and compare it with the disk (reads the whole disk twice more).
 * Needs about 3.5 × the disk size of free space in the temp folder; BENCH_DIR chooses the folder.
 *
 * The simulator has no real change tracking: at every snapshot it fingerprints the whole disk file (CRC-64 per
 * 64 KiB) to answer QueryChangedDiskAreas later. That cost grows with the disk and exists on no real ESXi, so it
 * is measured on its own (a snapshot taken and removed outside any job) and reported next to the job times.
 */
import { createHash, randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackupService } from '@vmkeep/backup';
import { loadConfig } from '@vmkeep/config';
import type { HostsService } from '@vmkeep/inventory';
import { HostEntity, JobEntity, openDataSource, RestorePointEntity, VmEntity, type RestorePointDisk } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { connect } from '@vmkeep/vsphere';
import { seededBytes } from '../test/peers/disk-images';
import { FolderRepositoryResolver } from '../test/peers/folder-repository';
import { startVcsim, type VcsimInstance } from '../test/peers/vcsim';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Pieces the disk image is generated in (bounded memory). */
const PIECE = 64 * MiB;

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(text.trim());
  if (!m) throw new Error(`bad size "${text}" (e.g. 4G, 512M)`);
  const unit = { '': 1, K: KiB, M: MiB, G: GiB }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(m[1]) * unit);
}

function parseArgs(argv: string[]): { size: number; chunkSize: number; verify: boolean } {
  const opts = { size: 4 * GiB, chunkSize: MiB, verify: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--size') opts.size = parseSize(argv[++i] ?? '');
    else if (arg === '--chunk-size') opts.chunkSize = parseSize(argv[++i] ?? '');
    else if (arg === '--verify') opts.verify = true;
    else throw new Error(`unknown argument ${arg} (use --size N, --chunk-size N, --verify)`);
  }
  if (opts.size % opts.chunkSize !== 0 || opts.size < 16 * opts.chunkSize) {
    throw new Error(`--size must be a multiple of the chunk size and at least 16 chunks`);
  }
  return opts;
}

/** The disk: per 64 MiB piece, 48 MiB pseudo-random then 16 MiB of zeros. */
async function writeImage(file: string, size: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let offset = 0; offset < size; offset += PIECE) {
      const length = Math.min(PIECE, size - offset);
      const piece = Buffer.alloc(length);
      seededBytes('bench-incremental', String(offset), Math.min(length, (PIECE * 3) / 4)).copy(piece);
      await handle.write(piece, 0, length, offset);
    }
  } finally {
    await handle.close();
  }
}

/** Changes `fraction` of the disk's blocks (chunk-size units, chosen at random, scattered); returns bytes written. */
async function scribble(file: string, size: number, block: number, fraction: number, seed: string): Promise<{ blocks: number; bytes: number }> {
  const total = size / block;
  const count = fraction === 0 ? 0 : Math.max(1, Math.round(total * fraction));
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(randomInt(total));
  const handle = await fs.open(file, 'r+');
  let bytes = 0;
  try {
    for (const b of [...chosen].sort((x, y) => x - y)) {
      const length = Math.min(block, 4 * KiB * randomInt(1, 17)); // 4–64 KiB
      const offset = b * block + randomInt(0, block - length + 1);
      await handle.write(seededBytes(seed, String(b), length), 0, length, offset);
      bytes += length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { blocks: count, bytes };
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'r');
  try {
    for await (const data of handle.createReadStream({ highWaterMark: 4 * MiB })) hash.update(data as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9;
const load = async () => (await fs.readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const work = await fs.mkdtemp(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'vmkeep-bench-incremental-'));
  let sim: VcsimInstance | undefined;
  try {
    console.log(`disk ${mib(opts.size)}, chunk ${mib(opts.chunkSize)}, load ${await load()}`);
    const image = path.join(work, 'disk.raw');
    let start = process.hrtime.bigint();
    await writeImage(image, opts.size);
    console.log(`generated the disk in ${seconds(start).toFixed(1)} s`);
    start = process.hrtime.bigint();
    sim = await startVcsim({ seed: [{ name: 'bench-vm', disks: [{ image }] }] });
    await fs.rm(image); // the simulator holds its own copy
    console.log(`vcsim up in ${seconds(start).toFixed(1)} s`);
    const simVm = sim.vms.find((v) => v.name === 'bench-vm')!;
    const flat = simVm.disks[0].localPath.replace(/\.vmdk$/, '-flat.vmdk');

    const config = loadConfig({ VMKEEP_DATA_DIR: path.join(work, 'data'), VMKEEP_CHUNK_SIZE: String(opts.chunkSize) }, work);
    const db = await openDataSource(config);
    const simulator = sim;
    const connectSim = () =>
      connect({ url: simulator.url, username: simulator.username, password: simulator.password, thumbprint: simulator.thumbprint });
    try {
      const host = await db.getRepository(HostEntity).save({ name: 'vcsim', url: sim.url, username: sim.username, passwordSealed: 'x' });
      const vm = await db.getRepository(VmEntity).save({ hostId: host.id, moref: simVm.id, name: 'bench-vm' });
      const service = new BackupService(
        db.getRepository(JobEntity),
        db.getRepository(VmEntity),
        db.getRepository(HostEntity),
        db.getRepository(RestorePointEntity),
        { sessionFor: connectSim } as unknown as HostsService,
        new FolderRepositoryResolver(config),
      );

      const backup = async (label: string) => {
        const before = await load();
        const job = await db.getRepository(JobEntity).save({ type: 'backup', state: 'queued', vmId: vm.id, options: { quiesce: false } });
        const t0 = process.hrtime.bigint();
        // The job's phases as the job row shows them (polled): where the time goes.
        const phases: { phase: string; at: number }[] = [];
        let running = true;
        const poll = (async () => {
          while (running) {
            const phase = (await db.getRepository(JobEntity).findOneBy({ id: job.id }))?.phase?.replace(/ \(\d+\/\d+\)$/, '') ?? '';
            if (phase && phases[phases.length - 1]?.phase !== phase) phases.push({ phase, at: seconds(t0) });
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        const state = await service.run(job.id).finally(() => (running = false));
        const wall = seconds(t0);
        await poll;
        const spans = phases.map((p, i) => ({ phase: p.phase, seconds: (phases[i + 1]?.at ?? wall) - p.at }));
        const profile = spans.map((p) => `${p.phase} ${p.seconds.toFixed(2)} s`).join(' · ');
        const snapshotPhase = spans.filter((p) => p.phase.startsWith('creating')).reduce((n, p) => n + p.seconds, 0);
        const row = (await db.getRepository(JobEntity).findOneBy({ id: job.id }))!;
        if (state !== 'succeeded') throw new Error(`${label}: job ${state}: ${row.error}`);
        const point = (await db.getRepository(RestorePointEntity).findOneBy({ id: row.restorePointId! }))!;
        const disk = point.disks[0] as RestorePointDisk;
        return { label, wall, bytesRead: row.stats?.bytesRead ?? 0, mode: disk.backupMode, point, load: `${before} → ${await load()}`, profile, snapshotPhase };
      };

      /** The simulator's fingerprint of the whole disk at snapshot time: a snapshot taken and removed alone. */
      const snapshotCost = async () => {
        const session = await connectSim();
        try {
          const t0 = process.hrtime.bigint();
          const snap = await session.createSnapshot(simVm.id, 'bench-probe', 'fixed-cost probe', false);
          await session.removeSnapshot(snap);
          return seconds(t0);
        } finally {
          await session.logout();
        }
      };

      const full = await backup('full');
      if (full.mode !== 'full') throw new Error(`the first backup was ${full.mode}`);
      const runs = [full];
      const changes: string[] = ['—'];
      // 0 %: nothing changed — the job's fixed cost (session, snapshot, CBT query, parent index, manifest, file index).
      for (const fraction of [0, 0.01, 0.1]) {
        const changed = await scribble(flat, opts.size, opts.chunkSize, fraction, `round-${fraction}`);
        changes.push(`${changed.blocks} blocks, ${mib(changed.bytes)} written`);
        const run = await backup(`incremental ${fraction * 100} %`);
        if (run.mode !== 'incremental') throw new Error(`${run.label} was ${run.mode}: ${JSON.stringify(run.point.disks)}`);
        runs.push(run);
      }
      const snapshot = await snapshotCost();

      console.log(`\n| run | changed | wall time | bytes read | time ÷ full | read ÷ full | 1-min load before → after |`);
      console.log(`|---|---|---|---|---|---|---|`);
      for (const [i, r] of runs.entries()) {
        const ratio = (a: number, b: number) => `${((100 * a) / b).toFixed(2)} %`;
        console.log(
          `| ${r.label} | ${changes[i]} | ${r.wall.toFixed(2)} s | ${mib(r.bytesRead)} | ${ratio(r.wall, full.wall)} | ` +
            `${ratio(r.bytesRead, full.bytesRead)} | ${r.load} |`,
        );
      }
      console.log('\nphases (from the job row, polled every 20 ms; the first one starts with the job):');
      for (const r of runs) console.log(`- ${r.label}: ${r.profile}`);
      console.log(`\nsnapshot create + remove alone (the simulator fingerprints the whole disk): ${snapshot.toFixed(2)} s`);
      for (const r of runs.slice(2)) {
        const net = (r.wall - r.snapshotPhase) / (full.wall - full.snapshotPhase);
        console.log(`${r.label} without the "creating snapshot" phases (its and the full's): ${(100 * net).toFixed(2)} % of the full's`);
      }
      console.log('goals: 1 % changed ≤ 3 % of the full\'s wall time, 10 % changed ≤ 15 %');

      if (opts.verify) {
        const last = runs[runs.length - 1].point;
        const repo = await Repository.open(config.repositoryPath);
        const disk = await repo.openDisk(last.repositoryPointId, last.disks[0].key);
        const hash = createHash('sha256');
        for (let offset = 0; offset < disk.size; offset += 8 * MiB) hash.update(await disk.read(offset, Math.min(8 * MiB, disk.size - offset)));
        await disk.close();
        await repo.close();
        const ok = hash.digest('hex') === (await sha256File(flat));
        console.log(`verify: the last point ${ok ? 'restores byte-exact' : 'DIFFERS from the disk'}`);
        if (!ok) process.exitCode = 1;
      }
    } finally {
      await db.destroy();
    }
  } finally {
    await sim?.stop();
    await closeSharedChunkWorkers();
    await fs.rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
