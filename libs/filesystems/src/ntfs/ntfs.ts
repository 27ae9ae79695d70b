/**
 * NTFS reader: boot sector, $MFT (itself possibly fragmented and with an attribute list), FILE records with
 * update-sequence checks, resident and non-resident attributes, attribute lists, directories as $I30 B+ trees
 * ($INDEX_ROOT / $INDEX_ALLOCATION / $BITMAP, walked in order with depth and loop bounds), unnamed $DATA content
 * (sparse runs read as zeros without reading, LZNT1 compression), alternate data streams and reparse points
 * reported in `stat().ntfs` (never followed), EFS-encrypted and deduplicated files refused. System files
 * (records below 24, among them $MFT and $Extend) are not listed. Read-only; every on-disk number is checked.
 */
import type { Disk } from '@vmkeep/disk';
import { DirectoryIndex, RawEntry, TreeFileSystem } from '../file';
import { FileSystemError, PathError, UnsupportedFileSystemError } from '../errors';
import type { FileHandle, FileStat } from '../types';
import { NtfsBoot, readBoot } from './boot';
import { applyFixup, ATTR, ATTR_FLAG, Attribute, MftRecord, ntTime, parseRecord, refNumber } from './record';
import { mergePieces, openStream, readWhole, Stream } from './stream';

const ROOT = 5;
const VOLUME = 3;
const FIRST_USER_RECORD = 24;
const MAX_ATTRIBUTE_LIST = 4 * 1024 * 1024;
const MAX_EXTENSION_RECORDS = 4096;
const MAX_INDEX_DEPTH = 32;
const MAX_BITMAP = 8 * 1024 * 1024;
const NODE_CACHE = 2048;
const MAX_INTERIX_LINK = 8 + 2 * 4096;

const FILE_ATTR = { readOnly: 0x1, system: 0x4, sparse: 0x200, reparse: 0x400, compressed: 0x800, encrypted: 0x4000 } as const;
export const REPARSE_TAG = { mountPoint: 0xa0000003, symlink: 0xa000000c, dedup: 0x80000013, wof: 0x80000017 } as const;

export interface NtfsReparse {
  tag: number;
  kind: 'symlink' | 'junction' | 'other';
  /** Target of a symlink or junction as stored (print name, else substitute name); never followed. */
  target?: string;
}

/** NTFS-only details of a file, on top of FileStat. */
export interface NtfsInfo {
  /** Windows file attribute bits from $STANDARD_INFORMATION. */
  attributes: number;
  /** Alternate (named) data streams with their sizes; the unnamed stream is the file's content. */
  streams: { name: string; size: number }[];
  reparse?: NtfsReparse;
  compressed: boolean;
  sparse: boolean;
  encrypted: boolean;
  creationTimeMs: number;
}

export interface NtfsFileStat extends FileStat {
  ntfs: NtfsInfo;
}

export interface NtfsNode {
  record: number;
  attrs: Attribute[];
  stat: NtfsFileStat;
  /** Target of a symlink (reparse point or Interix "IntxLNK" file, as ntfs-3g writes them). */
  linkTarget?: string;
}

interface IndexEntry {
  ref: number;
  name: string;
  namespace: number;
}

interface IndexWalk {
  node: NtfsNode;
  alloc?: FileHandle;
  bitmap?: Buffer;
  blockSize: number;
  vcnUnit: number;
  visited: Set<number>;
}

function utf16(buf: Buffer, at: number, chars: number): string {
  return buf.toString('utf16le', at, at + chars * 2);
}

export class NtfsFileSystem extends TreeFileSystem<NtfsNode> {
  readonly type = 'ntfs' as const;
  readonly label: string = '';
  readonly uuid: string;
  readonly size: number;
  readonly dirty: boolean = false;
  readonly warnings: string[] = [];
  private mft!: FileHandle;
  private mftRuns!: Stream;
  private records = 0;
  private readonly nodes = new Map<number, NtfsNode>();
  private readonly dirIndex = new DirectoryIndex<number>();

  private constructor(
    private readonly volume: Disk,
    private readonly boot: NtfsBoot,
  ) {
    super();
    this.uuid = boot.serial;
    this.size = boot.size;
  }

  static async open(volume: Disk): Promise<NtfsFileSystem> {
    const fs = new NtfsFileSystem(volume, await readBoot(volume));
    await fs.loadMft();
    const vol = await fs.node(VOLUME);
    const name = vol.attrs.find((a) => a.type === ATTR.volumeName)?.value;
    const info = vol.attrs.find((a) => a.type === ATTR.volumeInformation)?.value;
    const mutable = fs as { -readonly [K in 'label' | 'dirty']: NtfsFileSystem[K] };
    if (name) mutable.label = name.toString('utf16le', 0, name.length & ~1);
    if (info && info.length >= 12 && info.readUInt16LE(10) & 1) {
      mutable.dirty = true;
      fs.warnings.push('the volume is marked dirty (not cleanly unmounted): the view may be stale');
    }
    const root = await fs.node(ROOT);
    if (root.stat.type !== 'directory') throw fs.error('root directory', 'record 5 is not a directory');
    return fs;
  }

  private error(structure: string, message: string, offset?: number): FileSystemError {
    return new FileSystemError('ntfs', structure, message, offset);
  }

  /** Reads record 0 straight from the boot sector's location, then maps the whole $MFT from its $DATA. */
  private async loadMft(): Promise<void> {
    const { mftLcn, clusterSize, mftRecordSize } = this.boot;
    const offset = mftLcn * clusterSize;
    if (offset + mftRecordSize > this.volume.size) throw this.error('MFT record 0', 'lies outside the volume', offset);
    const buf = await this.volume.read(offset, mftRecordSize);
    applyFixup(buf, 'FILE', 'MFT record 0', offset);
    const rec = parseRecord(buf, 0, offset, this.boot.clusters);
    const first = rec.attributes.filter((a) => a.type === ATTR.data && a.name === '' && a.startVcn === 0);
    if (first.length !== 1 || first[0].value !== undefined) throw this.error('MFT record 0', '$MFT has no non-resident $DATA', offset);
    this.setMft(mergePieces(first));
    const node = await this.build(rec);
    this.setMft(this.stream(node.attrs, ATTR.data, '') as Stream);
  }

  private setMft(s: Stream): void {
    if (s.first.value !== undefined) throw this.error('MFT record 0', '$MFT $DATA is resident', s.first.offset);
    this.mftRuns = s;
    this.mft = openStream(this.volume, s, this.boot.clusterSize);
    this.records = Math.floor(Math.min(s.first.initializedSize, s.runs.reduce((n, r) => n + r.count, 0) * this.boot.clusterSize) / this.boot.mftRecordSize);
  }

  /** Volume byte offset of MFT byte `at` (for error messages). */
  private mftOffset(at: number): number | undefined {
    const cs = this.boot.clusterSize;
    const vcn = Math.floor(at / cs);
    const r = this.mftRuns.runs.find((x) => vcn >= x.vcn && vcn < x.vcn + x.count);
    return r && r.lcn !== null ? (r.lcn + vcn - r.vcn) * cs + (at % cs) : undefined;
  }

  private async readRecord(n: number): Promise<MftRecord> {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.records) throw this.error('MFT', `record ${n} is past the end of the MFT (${this.records} records)`);
    const at = n * this.boot.mftRecordSize;
    const buf = await this.mft.read(at, this.boot.mftRecordSize);
    const offset = this.mftOffset(at) ?? 0;
    applyFixup(buf, 'FILE', `MFT record ${n}`, offset);
    return parseRecord(buf, n, offset, this.boot.clusters);
  }

  private async node(n: number): Promise<NtfsNode> {
    const hit = this.nodes.get(n);
    if (hit) return hit;
    const rec = await this.readRecord(n);
    if (!rec.inUse) throw this.error(`MFT record ${n}`, 'is not in use');
    if (rec.base !== 0) throw this.error(`MFT record ${n}`, `is an extension record of record ${rec.base}`);
    const node = await this.build(rec);
    if (this.nodes.size >= NODE_CACHE) this.nodes.delete(this.nodes.keys().next().value as number);
    this.nodes.set(n, node);
    return node;
  }

  /** Gathers a record's attributes (following its attribute list) and works out its stat. */
  private async build(rec: MftRecord): Promise<NtfsNode> {
    let attrs = rec.attributes;
    const list = attrs.find((a) => a.type === ATTR.attributeList);
    if (list) attrs = [...attrs, ...(await this.extensionAttributes(rec.number, list))];
    const stat = this.makeStat(rec, attrs);
    const node: NtfsNode = { record: rec.number, attrs, stat, linkTarget: stat.ntfs.reparse?.target };
    if (stat.type === 'file' && stat.ntfs.attributes & FILE_ATTR.system && stat.size > 8 && stat.size <= MAX_INTERIX_LINK) {
      const s = this.stream(attrs, ATTR.data, '');
      const data = s && !(s.first.flags & ATTR_FLAG.encrypted) ? await readWhole(this.volume, s, this.boot.clusterSize, MAX_INTERIX_LINK, 'symlink') : undefined;
      if (data && data.toString('latin1', 0, 8) === 'IntxLNK\x01' && data.length % 2 === 0) {
        node.linkTarget = data.toString('utf16le', 8);
        stat.type = 'symlink';
        stat.mode = 0o777;
        stat.size = Buffer.byteLength(node.linkTarget);
      }
    }
    return node;
  }

  private async extensionAttributes(base: number, list: Attribute): Promise<Attribute[]> {
    const value = list.value ?? (await readWhole(this.volume, mergePieces([list]), this.boot.clusterSize, MAX_ATTRIBUTE_LIST, 'attribute list'));
    const refs = new Set<number>();
    for (let at = 0; at + 26 <= value.length; ) {
      const length = value.readUInt16LE(at + 4);
      if (length < 26 || at + length > value.length) throw this.error('attribute list', `entry length ${length} is invalid`, list.offset);
      const ref = refNumber(value, at + 0x10);
      if (ref !== base) refs.add(ref);
      if (refs.size > MAX_EXTENSION_RECORDS) throw this.error('attribute list', `more than ${MAX_EXTENSION_RECORDS} extension records`, list.offset);
      at += length;
    }
    const out: Attribute[] = [];
    for (const ref of refs) {
      const rec = await this.readRecord(ref);
      if (!rec.inUse || rec.base !== base) throw this.error(`MFT record ${ref}`, `is not an extension record of record ${base}`);
      for (const a of rec.attributes) if (a.type !== ATTR.attributeList) out.push(a);
    }
    return out;
  }

  /** The merged stream of attribute (type, name), or undefined. */
  private stream(attrs: Attribute[], type: number, name: string): Stream | undefined {
    const pieces = attrs.filter((a) => a.type === type && a.name === name);
    if (!pieces.length) return undefined;
    const resident = pieces.find((p) => p.value !== undefined);
    if (resident) return { first: resident, runs: [] };
    return mergePieces(pieces);
  }

  private makeStat(rec: MftRecord, attrs: Attribute[]): NtfsFileStat {
    const std = attrs.find((a) => a.type === ATTR.standardInformation)?.value;
    if (!std || std.length < 48) throw this.error(`MFT record ${rec.number}`, 'has no valid $STANDARD_INFORMATION');
    const flags = std.readUInt32LE(0x20);
    const names = attrs.filter((a) => a.type === ATTR.fileName && a.value && a.value.length >= 0x42 && a.value[0x41] !== 2);
    const isDir = rec.isDirectory || attrs.some((a) => a.type === ATTR.indexRoot && a.name === '$I30');
    const streams: { name: string; size: number }[] = [];
    let size = 0;
    let dataFlags = 0;
    for (const a of attrs) {
      if (a.type !== ATTR.data || a.startVcn !== 0) continue;
      if (a.name === '') {
        size = a.dataSize;
        dataFlags = a.flags;
      } else streams.push({ name: a.name, size: a.dataSize });
    }
    const reparse = this.reparseOf(attrs);
    const encrypted = (flags & FILE_ATTR.encrypted) !== 0 || (dataFlags & ATTR_FLAG.encrypted) !== 0
      || attrs.some((a) => a.type === ATTR.loggedUtilityStream && a.name === '$EFS');
    const linkKind = reparse && reparse.kind !== 'other';
    const readOnly = (flags & FILE_ATTR.readOnly) !== 0;
    return {
      type: linkKind ? 'symlink' : isDir ? 'directory' : 'file',
      size: linkKind ? Buffer.byteLength(reparse?.target ?? '') : isDir ? 0 : size,
      mode: linkKind ? 0o777 : isDir ? (readOnly ? 0o555 : 0o755) : readOnly ? 0o444 : 0o644,
      uid: 0,
      gid: 0,
      mtimeMs: ntTime(std, 0x08),
      ctimeMs: ntTime(std, 0x10),
      atimeMs: ntTime(std, 0x18),
      nlink: Math.max(1, names.length),
      inode: rec.number,
      ntfs: {
        attributes: flags,
        streams,
        reparse,
        compressed: (dataFlags & ATTR_FLAG.compressed) !== 0,
        sparse: (dataFlags & ATTR_FLAG.sparse) !== 0 || (flags & FILE_ATTR.sparse) !== 0,
        encrypted,
        creationTimeMs: ntTime(std, 0),
      },
    };
  }

  private reparseOf(attrs: Attribute[]): NtfsReparse | undefined {
    const a = attrs.find((x) => x.type === ATTR.reparsePoint);
    if (!a) return undefined;
    const v = a.value;
    if (!v || v.length < 8) return { tag: 0, kind: 'other' };
    const tag = v.readUInt32LE(0);
    const kind = tag === REPARSE_TAG.symlink ? 'symlink' : tag === REPARSE_TAG.mountPoint ? 'junction' : 'other';
    if (kind === 'other') return { tag, kind };
    const pathAt = kind === 'symlink' ? 20 : 16;
    if (v.length < pathAt) return { tag, kind: 'other' };
    const part = (o: number) => {
      const off = v.readUInt16LE(o);
      const len = v.readUInt16LE(o + 2);
      const from = pathAt + off;
      return from + len <= v.length && len % 2 === 0 ? v.toString('utf16le', from, from + len) : undefined;
    };
    const subst = part(8);
    const print = part(12);
    let target = print || subst;
    if (target === undefined) return { tag, kind: 'other' };
    const relative = kind === 'symlink' && (v.readUInt32LE(16) & 1) === 1;
    if (relative) target = target.replace(/\\/g, '/');
    return { tag, kind, target };
  }

  protected root(): Promise<NtfsNode> {
    return this.node(ROOT);
  }

  protected statOf(node: NtfsNode): FileStat {
    return node.stat;
  }

  protected async *entries(dir: NtfsNode): AsyncIterable<RawEntry<NtfsNode>> {
    for await (const e of this.indexEntries(dir)) yield { name: e.name, load: () => this.node(e.ref) };
  }

  protected lookup(dir: NtfsNode, name: string): Promise<NtfsNode | undefined> {
    const scan = async function* (entries: AsyncGenerator<IndexEntry>): AsyncGenerator<[string, number]> {
      for await (const e of entries) yield [e.name, e.ref];
    };
    return this.dirIndex
      .lookup(dir.record, name, () => scan(this.indexEntries(dir)))
      .then((ref) => (ref === undefined ? undefined : this.node(ref)));
  }

  protected async readlinkOf(node: NtfsNode, path: string): Promise<string> {
    const target = node.linkTarget;
    if (target === undefined) throw new PathError('EINVAL', path, 'reparse point has no target');
    return target;
  }

  protected async openNode(node: NtfsNode, path: string): Promise<FileHandle> {
    const { ntfs } = node.stat;
    if (ntfs.encrypted) throw new UnsupportedFileSystemError('ntfs', `${path}: EFS-encrypted files cannot be read`);
    const tag = ntfs.reparse?.tag;
    if (tag === REPARSE_TAG.dedup) throw new UnsupportedFileSystemError('ntfs', `${path}: Windows deduplicated files cannot be read`);
    if (tag === REPARSE_TAG.wof) throw new UnsupportedFileSystemError('ntfs', `${path}: WOF-compressed (system-compressed) files cannot be read`);
    const s = this.stream(node.attrs, ATTR.data, '');
    if (!s) throw this.error(`MFT record ${node.record}`, 'file has no unnamed $DATA attribute');
    return openStream(this.volume, s, this.boot.clusterSize);
  }

  /** Directory entries in index order, without DOS-only names and system files. */
  private async *indexEntries(dir: NtfsNode): AsyncGenerator<IndexEntry> {
    const rootAttr = dir.attrs.find((a) => a.type === ATTR.indexRoot && a.name === '$I30');
    const v = rootAttr?.value;
    if (!rootAttr || !v || v.length < 32) throw this.error(`MFT record ${dir.record}`, 'directory has no valid $INDEX_ROOT', rootAttr?.offset);
    const blockSize = v.readUInt32LE(8);
    if (blockSize < 512 || blockSize > 65536 || (blockSize & (blockSize - 1)) !== 0) {
      throw this.error('index root', `index block size ${blockSize} is invalid`, rootAttr.offset);
    }
    const walk: IndexWalk = {
      node: dir, blockSize, vcnUnit: blockSize >= this.boot.clusterSize ? this.boot.clusterSize : 512, visited: new Set(),
    };
    for await (const e of this.walkNode(v, 0x10, rootAttr.offset, walk, 0)) {
      if (e.namespace === 2 || e.ref < FIRST_USER_RECORD) continue;
      yield e;
    }
  }

  /** In-order walk of one index node (header at `headerAt` of `buf`), descending into sub-nodes. */
  private async *walkNode(buf: Buffer, headerAt: number, offset: number, walk: IndexWalk, depth: number): AsyncGenerator<IndexEntry> {
    const fail = (message: string) => this.error('index node', message, offset + headerAt);
    if (depth > MAX_INDEX_DEPTH) throw fail(`index deeper than ${MAX_INDEX_DEPTH} levels (loop?)`);
    if (headerAt + 16 > buf.length) throw fail('node header runs past the index block');
    const start = headerAt + buf.readUInt32LE(headerAt);
    const end = headerAt + buf.readUInt32LE(headerAt + 4);
    if (start < headerAt + 16 || end > buf.length || start > end) throw fail(`entries (${start}–${end}) do not fit the ${buf.length}-byte node`);
    for (let p = start; ; ) {
      if (p + 16 > end) throw fail('entries end without a last-entry marker');
      const length = buf.readUInt16LE(p + 8);
      const keyLength = buf.readUInt16LE(p + 10);
      const flags = buf.readUInt32LE(p + 12);
      if (length < 16 || (length & 7) !== 0 || p + length > end) throw fail(`entry length ${length} is invalid`);
      if (flags & 1) {
        if (length < 24) throw fail('sub-node entry is too short');
        const vcn = buf.readBigUInt64LE(p + length - 8);
        yield* this.walkBlock(vcn, walk, depth + 1);
      }
      if (flags & 2) return;
      if (keyLength < 0x42 || 16 + keyLength > length) throw fail(`key length ${keyLength} is invalid`);
      const chars = buf[p + 16 + 0x40];
      if (0x42 + chars * 2 > keyLength) throw fail('file name runs past the key');
      yield { ref: refNumber(buf, p), name: utf16(buf, p + 16 + 0x42, chars), namespace: buf[p + 16 + 0x41] };
      p += length;
    }
  }

  private async *walkBlock(vcnBig: bigint, walk: IndexWalk, depth: number): AsyncGenerator<IndexEntry> {
    if (!walk.alloc) {
      const alloc = this.stream(walk.node.attrs, ATTR.indexAllocation, '$I30');
      const bitmap = this.stream(walk.node.attrs, ATTR.bitmap, '$I30');
      if (!alloc || !bitmap) throw this.error(`MFT record ${walk.node.record}`, 'index has sub-nodes but no $INDEX_ALLOCATION / $BITMAP');
      walk.alloc = openStream(this.volume, alloc, this.boot.clusterSize);
      walk.bitmap = await readWhole(this.volume, bitmap, this.boot.clusterSize, MAX_BITMAP, 'index bitmap');
    }
    const offset = Number(vcnBig) * walk.vcnUnit;
    const block = offset / walk.blockSize;
    const where = `index block VCN ${vcnBig} of record ${walk.node.record}`;
    if (vcnBig > BigInt(Number.MAX_SAFE_INTEGER) || !Number.isInteger(block) || offset + walk.blockSize > walk.alloc.size) {
      throw this.error('index node', `${where} lies outside the index allocation`);
    }
    if (!((walk.bitmap as Buffer)[block >> 3] & (1 << (block & 7)))) throw this.error('index bitmap', `${where} is not marked in use`);
    if (walk.visited.has(block)) throw this.error('index node', `${where} is referenced twice (loop)`);
    walk.visited.add(block);
    const buf = await walk.alloc.read(offset, walk.blockSize);
    applyFixup(buf, 'INDX', where, 0);
    if (buf.readBigUInt64LE(0x10) !== vcnBig) throw this.error('index node', `${where} holds VCN ${buf.readBigUInt64LE(0x10)}`);
    yield* this.walkNode(buf, 0x18, 0, walk, depth);
  }
}

export function openNtfs(volume: Disk): Promise<NtfsFileSystem> {
  return NtfsFileSystem.open(volume);
}
