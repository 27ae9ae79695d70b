/**
 * Fuzz test of the LVM2 reader: the label, metadata-area header and metadata text of the lvm2-made PVs
 * (test/peers/lvm-images REAL_VG) are mutated — bit flips, byte runs, and text edits (digits, braces, quotes,
 * long numbers) — with the CRCs re-sealed in most cases so the parser and the VG checks are reached. Every case
 * must finish quickly with a result or typed errors (DiskError) only, and listed LVs must read or fail typed.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkRange, Disk, DiskError, Extent } from '@vmkeep/disk';
import { listVolumesOfVm, lvmCrc } from '@vmkeep/filesystems';
import { caseRng, Rng } from './peers/fuzz-mutate';
import { realLvmDisks } from './peers/lvm-images';

const HEAD = 16384;
const MDA = 4096;
const CASES = 600;

/** A disk whose first bytes are `head` and the rest zeros. */
class HeadDisk implements Disk {
  constructor(private readonly head: Buffer, readonly size: number) {}
  async read(offset: number, length: number): Promise<Buffer> {
    checkRange(this, 'fuzz', offset, length);
    const out = Buffer.alloc(length);
    if (offset < this.head.length) this.head.copy(out, 0, offset, Math.min(this.head.length, offset + length));
    return out;
  }
  async extents(): Promise<Extent[]> {
    return [{ offset: 0, length: this.size }];
  }
  async close(): Promise<void> {}
}

function textRange(head: Buffer): [number, number] {
  return [MDA + Number(head.readBigUInt64LE(MDA + 40)), Number(head.readBigUInt64LE(MDA + 48))];
}

function mutateText(head: Buffer, rng: Rng): void {
  const [at, size] = textRange(head);
  let text = head.toString('latin1', at, at + size);
  const edits = 1 + rng.int(4);
  for (let i = 0; i < edits; i++) {
    const p = rng.int(text.length);
    const choice = rng.int(6);
    if (choice === 0) text = text.slice(0, p) + text.slice(p + 1); // drop a character
    else if (choice === 1) text = text.slice(0, p) + rng.pick(['{', '}', '"', '[', ']', '=', ',', '#', '\\', '\n']) + text.slice(p + 1);
    else if (choice === 2) text = text.replace(/\d+/g, (m) => (rng.chance(0.1) ? rng.pick(['0', '1', '4294967296', '99999999999999999999', '-3', m + m]) : m));
    else if (choice === 3) text = text.replace(/"pv[01]"/, rng.pick(['"pv7"', '"pv1"', '"pv0"', '0']));
    else if (choice === 4) text = text.replace(/type = "striped"/, `type = "${rng.pick(['thin', 'raid5', 'mirror', 'striped'])}"`);
    else text = text.slice(0, p) + text.slice(p, p + rng.int(200)).repeat(2) + text.slice(p);
  }
  const bytes = Buffer.from(text, 'latin1');
  const room = HEAD - at;
  const kept = bytes.subarray(0, room);
  kept.copy(head, at);
  head.writeBigUInt64LE(BigInt(kept.length), MDA + 48);
  head.writeUInt32LE(lvmCrc(kept), MDA + 56);
}

function mutate(head: Buffer, rng: Rng): void {
  const region = rng.int(3);
  const [textAt, textSize] = textRange(head);
  if (region === 2) mutateText(head, rng);
  const [from, to] = region === 0 ? [512, 1024] : region === 1 ? [MDA, MDA + 512] : [textAt, textAt + textSize];
  const flips = region === 2 ? rng.int(2) : 1 + rng.int(4);
  for (let i = 0; i < flips; i++) {
    const p = from + rng.int(to - from);
    if (rng.chance(0.5)) head[p] ^= 1 << rng.int(8);
    else head[p] = rng.pick([0, 0xff, 0x7f, 0x80, head[p] + 1]);
  }
  if (rng.chance(0.75)) {
    if (region === 0) head.writeUInt32LE(lvmCrc(head.subarray(532, 1024)), 528);
    if (region === 2) head.writeUInt32LE(lvmCrc(head.subarray(textAt, textAt + Number(head.readBigUInt64LE(MDA + 48)))), MDA + 56);
  }
  if (region !== 0 && rng.chance(0.75)) head.writeUInt32LE(lvmCrc(head.subarray(MDA + 4, MDA + 512)), MDA);
}

let dir: string;
let heads: Buffer[];
let size: number;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-fs-lvm-fuzz-'));
  const vg = await realLvmDisks(dir);
  heads = await Promise.all(vg.pvs.map(async (pv) => (await fs.readFile(pv.file)).subarray(0, HEAD)));
  size = vg.pvs[0].size;
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test(`${CASES} mutated PV labels, metadata headers and metadata texts give results or typed errors only`, async () => {
  const outcomes = { listed: 0, failed: 0 };
  for (let n = 0; n < CASES; n++) {
    const rng = caseRng(0x1f2e3d, n);
    const mutated = heads.map((h) => Buffer.from(h));
    const victims = rng.chance(0.3) ? [0, 1] : [rng.int(2)];
    for (const v of victims) mutate(mutated[v], rng);
    const started = Date.now();
    let result;
    try {
      result = await listVolumesOfVm(mutated.map((h) => new HeadDisk(h, size)));
    } catch (e) {
      throw new Error(`case ${n}: listVolumesOfVm threw ${(e as Error).stack}`, { cause: e });
    }
    for (const f of result.failed) expect(f.error).toBeInstanceOf(DiskError);
    for (const { volume } of result.volumes) {
      for (const at of [0, volume.size - 4096]) {
        await volume.read(at, 4096).catch((e: unknown) => {
          if (!(e instanceof DiskError)) throw new Error(`case ${n}: read threw ${(e as Error).stack}`, { cause: e });
        });
      }
    }
    outcomes.listed += result.volumes.length;
    outcomes.failed += result.failed.length;
    expect(Date.now() - started).toBeLessThan(2000);
  }
  // The mutations reach both outcomes: some cases still list LVs, many fail with typed errors.
  expect(outcomes.listed).toBeGreaterThan(0);
  expect(outcomes.failed).toBeGreaterThan(CASES / 4);
});
