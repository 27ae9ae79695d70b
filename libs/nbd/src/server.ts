/**
 * An NBD server (fixed newstyle) exporting Disks under names. It listens only where it is told; access needs the
 * export name — use a random token (newExportToken) — and, if configured, a client address on the allow-list.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import type { Disk, Extent, WritableDisk } from '@vmkeep/disk';
import { Connection, type ConnectionHost, type ExportEntry } from './connection';
import { NbdError } from './errors';

export interface NbdServerOptions {
  host: string;
  /** 0 = any free port (see address()). */
  port: number;
  /** Client addresses allowed to connect: IPs or CIDR ranges ("10.0.0.0/8"). Omitted or empty = anyone. */
  allow?: string[];
  /** Largest READ/WRITE payload; larger requests get EOVERFLOW. Default 32 MiB. */
  maxRequestBytes?: number;
  /** A client must finish option haggling within this time. Default 30 s. */
  handshakeTimeoutMs?: number;
  maxConnections?: number;
  /** Receives one line per noteworthy event; never export names (they are access tokens). */
  log?: (message: string) => void;
}

export interface NbdExportOptions {
  /** Writable exports need a WritableDisk (e.g. an OverlayDisk). Default true. */
  readOnly?: boolean;
  description?: string;
  /** Show the name to NBD_OPT_LIST. Default false (names are secrets). */
  listed?: boolean;
}

export const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;

/** `nbd://host:port/name` (IPv6 hosts in brackets). The name is the access token: show the URL only to its owner. */
export function nbdUrl(host: string, port: number, name: string): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return `nbd://${h}:${port}/${encodeURIComponent(name)}`;
}

/** A random export name that is hard to guess (192 bits, URL-safe). */
export function newExportToken(): string {
  return randomBytes(24).toString('base64url');
}

export class NbdServer {
  private readonly exports = new Map<string, ExportEntry>();
  private readonly connections = new Map<Connection, ExportEntry | undefined>();
  private readonly extentCache = new WeakMap<ExportEntry, Promise<Extent[]>>();
  private readonly blockList?: net.BlockList;
  private readonly host: ConnectionHost;
  private readonly server: net.Server;
  private readonly options: Required<Omit<NbdServerOptions, 'allow' | 'log'>> & Pick<NbdServerOptions, 'log'>;

  constructor(options: NbdServerOptions) {
    const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < 4096 || maxRequestBytes > 0xffffffff) {
      throw new NbdError(`maxRequestBytes must be an integer between 4096 and 2^32-1 (got ${maxRequestBytes})`);
    }
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new NbdError(`port must be between 0 and 65535 (got ${options.port})`);
    }
    this.options = {
      host: options.host,
      port: options.port,
      maxRequestBytes,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      maxConnections: options.maxConnections ?? 256,
      log: options.log,
    };
    if (options.allow?.length) this.blockList = parseAllowList(options.allow);
    this.host = this.makeHost();
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.maxConnections = this.options.maxConnections;
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.options.host, port: this.options.port }, () => {
        this.server.off('error', reject);
        resolve(this.address());
      });
    });
  }

  address(): { host: string; port: number } {
    const a = this.server.address();
    if (!a || typeof a === 'string') throw new NbdError('the NBD server is not listening');
    return { host: a.address, port: a.port };
  }

  addExport(name: string, disk: Disk | WritableDisk, options: NbdExportOptions = {}): void {
    if (Buffer.byteLength(name) > 4096) throw new NbdError('export names are at most 4096 bytes');
    if (this.exports.has(name)) throw new NbdError('an export of that name exists already');
    const readOnly = options.readOnly ?? true;
    if (!readOnly && !isWritable(disk)) throw new NbdError('a writable export needs a disk with write, writeZeroes and flush');
    this.exports.set(name, { disk, readOnly, description: options.description, listed: options.listed ?? false });
  }

  /** Removes the export and disconnects its clients; the disk stays open (its owner closes it). */
  removeExport(name: string): boolean {
    const entry = this.exports.get(name);
    if (!entry) return false;
    this.exports.delete(name);
    for (const [conn, e] of this.connections) if (e === entry) conn.kill();
    return true;
  }

  /** Clients connected to an export right now. */
  clientsOf(name: string): number {
    const entry = this.exports.get(name);
    let n = 0;
    for (const e of this.connections.values()) if (entry && e === entry) n++;
    return n;
  }

  /** Stops listening and disconnects every client. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of this.connections.keys()) conn.kill();
    await closed;
  }

  private accept(socket: net.Socket): void {
    if (this.blockList && !this.allowed(socket.remoteAddress)) {
      this.options.log?.(`nbd: refused ${socket.remoteAddress ?? '?'}: not on the allow-list`);
      socket.destroy();
      return;
    }
    const conn = new Connection(socket, this.host);
    this.connections.set(conn, undefined);
    void conn.run();
  }

  private allowed(address: string | undefined): boolean {
    if (!address || !this.blockList) return false;
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    if (v4) return this.blockList.check(v4, 'ipv4');
    return this.blockList.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
  }

  private makeHost(): ConnectionHost {
    return {
    lookup: (name) => this.exports.get(name),
    listed: () => [...this.exports].filter(([, e]) => e.listed),
    extentsOf: (entry) => {
      if (!entry.readOnly) return entry.disk.extents();
      let cached = this.extentCache.get(entry);
      if (!cached) {
        cached = entry.disk.extents();
        cached.catch(() => this.extentCache.delete(entry));
        this.extentCache.set(entry, cached);
      }
      return cached;
    },
    attach: (entry, conn) => {
      this.connections.set(conn, entry);
      // Removed while this client was still haggling.
      if (![...this.exports.values()].includes(entry)) conn.kill();
    },
    detach: (conn) => void this.connections.delete(conn),
    maxRequestBytes: this.options.maxRequestBytes,
    handshakeTimeoutMs: this.options.handshakeTimeoutMs,
    log: (message) => this.options.log?.(message),
    };
  }
}

function isWritable(disk: Disk | WritableDisk): disk is WritableDisk {
  const w = disk as Partial<WritableDisk>;
  return typeof w.write === 'function' && typeof w.writeZeroes === 'function' && typeof w.flush === 'function';
}

/** Builds the allow-list; NbdError names the first entry that is neither an IP nor a CIDR range. */
export function parseAllowList(entries: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const raw of entries) {
    const entry = raw.trim();
    const [ip, bits, extra] = entry.split('/');
    const family = net.isIPv4(ip) ? 'ipv4' : net.isIPv6(ip) ? 'ipv6' : undefined;
    const prefix = bits === undefined ? undefined : Number(bits);
    const maxBits = family === 'ipv4' ? 32 : 128;
    if (!family || extra !== undefined || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > maxBits) ) || bits === '') {
      throw new NbdError(`allow-list entry "${entry}" is not an IP address or CIDR range`);
    }
    if (prefix === undefined) list.addAddress(ip, family);
    else list.addSubnet(ip, prefix, family);
  }
  return list;
}
