/**
 * One client connection: the fixed-newstyle handshake (option haggling) and then the transmission phase.
 * Anything malformed ends the connection; nothing a client sends can throw out of here.
 */
import type { Socket } from 'node:net';
import type { Disk, Extent, WritableDisk } from '@vmkeep/disk';
import {
  BASE_ALLOCATION,
  BASE_ALLOCATION_ID,
  CMD,
  CMD_FLAG,
  ERRNO,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
  REPLY_FLAG_DONE,
  REPLY_TYPE,
  REQUEST_HEADER_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STATE_HOLE,
  STATE_ZERO,
  STRUCTURED_REPLY_MAGIC,
  TF,
} from './constants';
import { piecesOf } from './extents';
import { ConnectionClosedError, SocketReader } from './reader';

/** What the server offers under one export name. */
export interface ExportEntry {
  disk: Disk | WritableDisk;
  readOnly: boolean;
  description?: string;
  /** Shown by NBD_OPT_LIST; token-named exports stay unlisted so that listing reveals no token. */
  listed: boolean;
}

/** What a connection needs from its server. */
export interface ConnectionHost {
  lookup(name: string): ExportEntry | undefined;
  listed(): Array<[string, ExportEntry]>;
  /** Extents of an export (cached for read-only exports). */
  extentsOf(entry: ExportEntry): Promise<Extent[]>;
  attach(entry: ExportEntry, conn: Connection): void;
  detach(conn: Connection): void;
  readonly maxRequestBytes: number;
  readonly handshakeTimeoutMs: number;
  log(message: string): void;
}

/** Requests one connection works on at once (replies may come back out of order, matched by cookie). */
const MAX_IN_FLIGHT = 16;
/** Payload bytes of the requests in flight (beyond one request), and of replies queued for a slow reader. */
const MAX_IN_FLIGHT_BYTES = 64 * 1024 * 1024;
/** Largest option payload accepted; longer ones end the connection. */
const MAX_OPTION_BYTES = 64 * 1024;
/** Largest number of block status descriptors in one reply. */
const MAX_DESCRIPTORS = 16 * 1024;
const PREFERRED_BLOCK = 4096;

class ProtocolViolation extends Error {}

export class Connection {
  private readonly reader: SocketReader;
  private clientFlags = 0;
  private structured = false;
  private metaAllocation = false;
  private entry?: ExportEntry;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  /** Resolves the request loop's wait for a free slot (one waiter at most: the loop). */
  private slotFreed?: () => void;
  /** Replies written in this tick are corked and leave in one writev when the tick ends. */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: Socket,
    private readonly host: ConnectionHost,
  ) {
    this.reader = new SocketReader(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // reported through the reader as a closed connection
  }

  /** Runs the connection to its end; never rejects. */
  async run(): Promise<void> {
    const timer = setTimeout(() => this.socket.destroy(), this.host.handshakeTimeoutMs);
    try {
      const entry = await this.handshake();
      clearTimeout(timer);
      if (!entry) return;
      this.entry = entry;
      this.host.attach(entry, this);
      await this.transmission(entry);
    } catch (err) {
      if (!(err instanceof ConnectionClosedError)) {
        this.host.log(`nbd: client ${this.peer()} disconnected: ${(err as Error).message}`);
      }
    } finally {
      clearTimeout(timer);
      await Promise.allSettled([...this.inFlight]);
      this.host.detach(this);
      this.socket.destroy();
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Ends the connection (export removed, server closing). */
  kill(): void {
    this.socket.destroy();
  }

  private peer(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  // ---- handshake ----

  private async handshake(): Promise<ExportEntry | undefined> {
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    this.socket.write(hello);
    this.clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if ((this.clientFlags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) !== 0) {
      throw new ProtocolViolation(`unknown client flags 0x${this.clientFlags.toString(16)}`);
    }
    for (;;) {
      const head = await this.reader.read(16);
      if (head.readBigUInt64BE(0) !== IHAVEOPT) throw new ProtocolViolation('bad option magic');
      const option = head.readUInt32BE(8);
      const length = head.readUInt32BE(12);
      if (length > MAX_OPTION_BYTES) throw new ProtocolViolation(`option ${option} of ${length} bytes is too long`);
      const data = length ? await this.reader.read(length) : Buffer.alloc(0);
      const result = await this.option(option, data);
      if (result === 'abort') return undefined;
      if (result) return result;
    }
  }

  /** Handles one option; returns the export to serve after EXPORT_NAME/GO, 'abort', or undefined to go on. */
  private async option(option: number, data: Buffer): Promise<ExportEntry | 'abort' | undefined> {
    switch (option) {
      case OPT.EXPORT_NAME: {
        const entry = this.host.lookup(data.toString('utf8'));
        if (!entry) throw new ProtocolViolation('unknown export requested with EXPORT_NAME');
        const reply = Buffer.alloc(this.clientFlags & FLAG_NO_ZEROES ? 10 : 134);
        reply.writeBigUInt64BE(BigInt(entry.disk.size), 0);
        reply.writeUInt16BE(this.transmissionFlags(entry), 8);
        this.socket.write(reply);
        return entry;
      }
      case OPT.ABORT:
        this.optionReply(option, REP.ACK);
        this.socket.end();
        return 'abort';
      case OPT.LIST:
        if (data.length) return this.optionError(option, REP.ERR_INVALID, 'LIST takes no data');
        for (const [name, entry] of this.host.listed()) {
          const n = Buffer.from(name, 'utf8');
          const d = Buffer.from(entry.description ?? '', 'utf8');
          const payload = Buffer.alloc(4 + n.length + d.length);
          payload.writeUInt32BE(n.length, 0);
          n.copy(payload, 4);
          d.copy(payload, 4 + n.length);
          this.optionReply(option, REP.SERVER, payload);
        }
        this.optionReply(option, REP.ACK);
        return undefined;
      case OPT.INFO:
      case OPT.GO:
        return this.infoOrGo(option, data);
      case OPT.STRUCTURED_REPLY:
        if (data.length) return this.optionError(option, REP.ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.optionReply(option, REP.ACK);
        return undefined;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT:
        this.metaContext(option, data);
        return undefined;
      default:
        return this.optionError(option, REP.ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private infoOrGo(option: number, data: Buffer): ExportEntry | undefined {
    if (data.length < 6) return this.optionError(option, REP.ERR_INVALID, 'request too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.optionError(option, REP.ERR_INVALID, 'bad name length');
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * count) return this.optionError(option, REP.ERR_INVALID, 'bad request length');
    const requested = new Set<number>();
    for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(6 + nameLength + 2 * i));
    const entry = this.host.lookup(name);
    if (!entry) return this.optionError(option, REP.ERR_UNKNOWN, 'no such export');

    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(INFO.EXPORT, 0);
    exportInfo.writeBigUInt64BE(BigInt(entry.disk.size), 2);
    exportInfo.writeUInt16BE(this.transmissionFlags(entry), 10);
    this.optionReply(option, REP.INFO, exportInfo);
    const blockSize = Buffer.alloc(14);
    blockSize.writeUInt16BE(INFO.BLOCK_SIZE, 0);
    blockSize.writeUInt32BE(1, 2);
    blockSize.writeUInt32BE(PREFERRED_BLOCK, 6);
    blockSize.writeUInt32BE(this.host.maxRequestBytes, 10);
    this.optionReply(option, REP.INFO, blockSize);
    if (requested.has(INFO.NAME)) {
      this.optionReply(option, REP.INFO, Buffer.concat([u16(INFO.NAME), Buffer.from(name, 'utf8')]));
    }
    if (requested.has(INFO.DESCRIPTION) && entry.description) {
      this.optionReply(option, REP.INFO, Buffer.concat([u16(INFO.DESCRIPTION), Buffer.from(entry.description, 'utf8')]));
    }
    this.optionReply(option, REP.ACK);
    return option === OPT.GO ? entry : undefined;
  }

  private metaContext(option: number, data: Buffer): void {
    const fail = (message: string): void => void this.optionError(option, REP.ERR_INVALID, message);
    if (option === OPT.SET_META_CONTEXT && !this.structured) return fail('structured replies must be negotiated first');
    if (data.length < 8) return fail('request too short');
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 8) return fail('bad name length');
    const name = data.toString('utf8', 4, 4 + nameLength);
    let at = 4 + nameLength;
    const count = data.readUInt32BE(at);
    at += 4;
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      if (at + 4 > data.length) return fail('bad query list');
      const len = data.readUInt32BE(at);
      if (at + 4 + len > data.length) return fail('bad query length');
      queries.push(data.toString('utf8', at + 4, at + 4 + len));
      at += 4 + len;
    }
    if (at !== data.length) return fail('trailing bytes');
    if (!this.host.lookup(name)) return void this.optionError(option, REP.ERR_UNKNOWN, 'no such export');
    const matches =
      option === OPT.LIST_META_CONTEXT
        ? count === 0 || queries.some((q) => q === 'base:' || q === BASE_ALLOCATION)
        : queries.includes(BASE_ALLOCATION);
    if (option === OPT.SET_META_CONTEXT) this.metaAllocation = matches;
    if (matches) {
      const id = Buffer.alloc(4);
      id.writeUInt32BE(option === OPT.SET_META_CONTEXT ? BASE_ALLOCATION_ID : 0, 0);
      this.optionReply(option, REP.META_CONTEXT, Buffer.concat([id, Buffer.from(BASE_ALLOCATION)]));
    }
    this.optionReply(option, REP.ACK);
  }

  private transmissionFlags(entry: ExportEntry): number {
    let flags = TF.HAS_FLAGS | TF.SEND_FLUSH | TF.SEND_FUA | TF.SEND_DF | TF.CAN_MULTI_CONN | TF.SEND_CACHE;
    if (entry.readOnly) flags |= TF.READ_ONLY;
    else flags |= TF.SEND_TRIM | TF.SEND_WRITE_ZEROES | TF.SEND_FAST_ZERO;
    return flags;
  }

  private optionReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): void {
    const head = Buffer.alloc(20);
    head.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
    head.writeUInt32BE(option, 8);
    head.writeUInt32BE(type, 12);
    head.writeUInt32BE(payload.length, 16);
    this.socket.write(payload.length ? Buffer.concat([head, payload]) : head);
  }

  private optionError(option: number, type: number, message: string): undefined {
    this.optionReply(option, type, Buffer.from(message, 'utf8'));
    return undefined;
  }

  // ---- transmission ----

  private async transmission(entry: ExportEntry): Promise<void> {
    for (;;) {
      const head = this.reader.tryRead(REQUEST_HEADER_BYTES) ?? (await this.reader.read(REQUEST_HEADER_BYTES));
      if (head.readUInt32BE(0) !== REQUEST_MAGIC) throw new ProtocolViolation('bad request magic');
      const req: Request = {
        flags: head.readUInt16BE(4),
        type: head.readUInt16BE(6),
        cookie: head.subarray(8, 16),
        offset: head.readUInt32BE(16) * 0x1_0000_0000 + head.readUInt32BE(20),
        length: head.readUInt32BE(24),
      };
      let payload: Buffer | undefined;
      if (req.type === CMD.WRITE) {
        if (req.length > this.host.maxRequestBytes) {
          // The payload cannot be skipped safely at this size: answer and hang up, as the protocol allows.
          this.error(req, ERRNO.EOVERFLOW, `write of ${req.length} bytes exceeds ${this.host.maxRequestBytes}`);
          this.socket.end();
          return;
        }
        payload = await this.reader.read(req.length);
      }
      if (req.type === CMD.DISC) {
        await Promise.allSettled([...this.inFlight]);
        this.socket.end();
        return;
      }
      // Bounded memory per client: few requests and bytes in flight, and no reading ahead of a slow reader.
      const bytes = req.type === CMD.READ || req.type === CMD.WRITE ? Math.min(req.length, this.host.maxRequestBytes) : 0;
      while (this.inFlight.size >= MAX_IN_FLIGHT || (this.inFlight.size > 0 && this.inFlightBytes + bytes > MAX_IN_FLIGHT_BYTES)) {
        await new Promise<void>((resolve) => (this.slotFreed = resolve));
      }
      if (this.socket.writableLength > MAX_IN_FLIGHT_BYTES) await this.drained();
      this.inFlightBytes += bytes;
      const job = this.handle(entry, req, payload).catch((err: Error) => {
        this.host.log(`nbd: request failed: ${err.message}`);
        if (!this.socket.destroyed) this.error(req, ERRNO.EIO, err.message);
      });
      const tracked: Promise<void> = job.finally(() => {
        this.inFlight.delete(tracked);
        this.inFlightBytes -= bytes;
        const freed = this.slotFreed;
        this.slotFreed = undefined;
        freed?.();
      });
      this.inFlight.add(tracked);
    }
  }

  private async handle(entry: ExportEntry, req: Request, payload?: Buffer): Promise<void> {
    const { disk } = entry;
    const known = CMD_FLAG.FUA | CMD_FLAG.NO_HOLE | CMD_FLAG.DF | CMD_FLAG.REQ_ONE | CMD_FLAG.FAST_ZERO;
    if (req.flags & ~known) return this.error(req, ERRNO.EINVAL, 'unknown command flags');
    const writes = req.type === CMD.WRITE || req.type === CMD.TRIM || req.type === CMD.WRITE_ZEROES;
    if (writes && entry.readOnly) return this.error(req, ERRNO.EPERM, 'the export is read-only');
    if (req.type === CMD.FLUSH) {
      const others = [...this.inFlight];
      await Promise.allSettled(others);
      if (!entry.readOnly) await (disk as WritableDisk).flush();
      return this.ok(req);
    }
    if (req.type > CMD.BLOCK_STATUS) return this.error(req, ERRNO.EINVAL, `unknown command ${req.type}`);
    const sized = req.type === CMD.READ || req.type === CMD.WRITE;
    if (sized && req.length > this.host.maxRequestBytes) {
      return this.error(req, ERRNO.EOVERFLOW, `request of ${req.length} bytes exceeds ${this.host.maxRequestBytes}`);
    }
    if (req.offset + req.length > disk.size || !Number.isSafeInteger(req.offset)) {
      return this.error(req, ERRNO.EINVAL, 'request past the end of the export');
    }
    switch (req.type) {
      case CMD.READ:
        return this.read(entry, req);
      case CMD.WRITE: {
        const w = disk as WritableDisk;
        await w.write(req.offset, payload ?? Buffer.alloc(0));
        if (req.flags & CMD_FLAG.FUA) await w.flush();
        return this.ok(req);
      }
      case CMD.TRIM:
      case CMD.WRITE_ZEROES: {
        const w = disk as WritableDisk;
        if (req.length) await w.writeZeroes(req.offset, req.length);
        if (req.flags & CMD_FLAG.FUA) await w.flush();
        return this.ok(req);
      }
      case CMD.CACHE:
        return this.ok(req);
      case CMD.BLOCK_STATUS:
        return this.blockStatus(entry, req);
      default:
        return this.error(req, ERRNO.EINVAL, `unexpected command ${req.type}`);
    }
  }

  private async read(entry: ExportEntry, req: Request): Promise<void> {
    const data = req.length ? await entry.disk.read(req.offset, req.length) : Buffer.alloc(0);
    if (this.socket.destroyed) return;
    if (!this.structured) {
      this.send(simpleHeader(req, 0));
      this.send(data);
      return;
    }
    const pieces =
      req.flags & CMD_FLAG.DF || req.length === 0
        ? [{ offset: req.offset, length: req.length, hole: false }]
        : piecesOf(await this.host.extentsOf(entry), req.offset, req.length);
    pieces.forEach((p, i) => {
      const flags = i === pieces.length - 1 ? REPLY_FLAG_DONE : 0;
      // Chunk header and the 8-byte offset in one buffer; OFFSET_HOLE adds the 4-byte length.
      const head = chunkHeader(req, flags, p.hole ? REPLY_TYPE.OFFSET_HOLE : REPLY_TYPE.OFFSET_DATA, p.hole ? 12 : 8 + p.length, p.hole ? 12 : 8);
      head.writeUInt32BE(Math.floor(p.offset / 0x1_0000_0000), 20);
      head.writeUInt32BE(p.offset % 0x1_0000_0000, 24);
      if (p.hole) {
        head.writeUInt32BE(p.length, 28);
        this.send(head);
      } else {
        this.send(head);
        this.send(data.subarray(p.offset - req.offset, p.offset - req.offset + p.length));
      }
    });
  }

  /** Writes part of a reply; everything sent in one tick leaves together (cork until the tick ends). */
  private send(buffer: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(buffer);
  }

  private async blockStatus(entry: ExportEntry, req: Request): Promise<void> {
    if (!this.structured || !this.metaAllocation) {
      return this.error(req, ERRNO.EINVAL, 'no metadata context was negotiated');
    }
    if (req.length === 0) return this.error(req, ERRNO.EINVAL, 'zero-length block status');
    const max = req.flags & CMD_FLAG.REQ_ONE ? 1 : MAX_DESCRIPTORS;
    const pieces = piecesOf(await this.host.extentsOf(entry), req.offset, req.length, max);
    const body = Buffer.alloc(4 + 8 * pieces.length);
    body.writeUInt32BE(BASE_ALLOCATION_ID, 0);
    pieces.forEach((p, i) => {
      body.writeUInt32BE(p.length, 4 + 8 * i);
      body.writeUInt32BE(p.hole ? STATE_HOLE | STATE_ZERO : 0, 8 + 8 * i);
    });
    if (this.socket.destroyed) return;
    this.send(Buffer.concat([chunkHeader(req, REPLY_FLAG_DONE, REPLY_TYPE.BLOCK_STATUS, body.length), body]));
  }

  private ok(req: Request): void {
    if (this.socket.destroyed) return;
    if (this.structured) this.send(chunkHeader(req, REPLY_FLAG_DONE, REPLY_TYPE.NONE, 0));
    else this.send(simpleHeader(req, 0));
  }

  private error(req: Request, errno: number, message: string): void {
    if (this.socket.destroyed) return;
    if (!this.structured) {
      this.send(simpleHeader(req, errno));
      return;
    }
    const text = Buffer.from(message.slice(0, 1024), 'utf8');
    const body = Buffer.alloc(6 + text.length);
    body.writeUInt32BE(errno, 0);
    body.writeUInt16BE(text.length, 4);
    text.copy(body, 6);
    this.send(Buffer.concat([chunkHeader(req, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, body.length), body]));
  }
}

interface Request {
  flags: number;
  type: number;
  cookie: Buffer;
  offset: number;
  length: number;
}

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

function simpleHeader(req: Request, errno: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(errno, 4);
  req.cookie.copy(b, 8);
  return b;
}

/** A structured reply chunk header (20 bytes), plus `extra` zeroed bytes of payload the caller fills in. */
function chunkHeader(req: Request, flags: number, type: number, length: number, extra = 0): Buffer {
  const b = Buffer.alloc(20 + extra);
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  req.cookie.copy(b, 8);
  b.writeUInt32BE(length, 16);
  return b;
}
