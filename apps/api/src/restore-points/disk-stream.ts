import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Disk } from '@vmkeep/disk';
import type { ExportStream } from '@vmkeep/restore';

/** An inclusive byte range, as in Content-Range. */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Reads a `Range` header against a resource of `size` bytes. Only a single `bytes=` range is honoured: no header,
 * another unit, several ranges or a malformed value give undefined (serve everything, as RFC 9110 allows);
 * a well-formed range outside the resource gives 'unsatisfiable'.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const last = m[2] === '' ? Infinity : Number(m[2]);
  if (!Number.isSafeInteger(start) || last < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(last, size - 1) };
}

/**
 * The preamble of a byte download of `size` bytes (a disk, a guest file): Accept-Ranges, one `Range` honoured
 * (206 with Content-Range; 416 with `bytes *\/size` when outside), Content-Type octet-stream, `disposition`, and
 * Content-Length. Returns the span whose bytes the caller streams, or undefined when the response is already
 * complete (416, an empty resource, or a HEAD request).
 */
export function startByteDownload(res: ServerResponse, rangeHeader: string | undefined, size: number, disposition: string): ByteRange | undefined {
  const range = parseRange(rangeHeader, size);
  res.setHeader('Accept-Ranges', 'bytes');
  if (range === 'unsatisfiable') {
    res.statusCode = 416;
    res.setHeader('Content-Range', `bytes */${size}`);
    res.end();
    return undefined;
  }
  const span = range ?? { start: 0, end: size - 1 };
  res.statusCode = range ? 206 : 200;
  if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Disposition', disposition);
  res.setHeader('Content-Length', String(span.end - span.start + 1));
  if (size === 0 || res.req?.method === 'HEAD') {
    res.end();
    return undefined;
  }
  return span;
}

/** Size of each read from the disk (one repository chunk at the default chunk size). */
export const STREAM_READ_SIZE = 1024 * 1024;

/**
 * Writes disk bytes [start, end] (inclusive) to an HTTP response whose headers are set, one read at a time and
 * only as fast as the client takes them (waits for 'drain'). Stops when the client goes away. A read error
 * destroys the response so the client sees a truncated transfer, never substitute data; the error is rethrown.
 */
export async function streamDisk(disk: Disk, res: ServerResponse, range: ByteRange, readSize = STREAM_READ_SIZE): Promise<void> {
  let offset = range.start;
  const end = range.end + 1;
  try {
    while (offset < end && !res.destroyed) {
      // Aligned reads after the first one keep each read inside as few chunks as possible.
      const length = Math.min(readSize - (offset % readSize), end - offset);
      const data = await disk.read(offset, length);
      offset += length;
      if (!res.write(data)) await drained(res);
    }
    if (!res.destroyed) res.end();
  } catch (err) {
    res.destroy(err as Error);
    throw err;
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Sends an export as a 200 download named `fileName`: with Content-Length when the export knows its length,
 * chunked otherwise. Sent only as fast as the client takes it; a client that goes away stops the reads. An
 * error while streaming destroys the response (the client sees a truncated transfer) and is rethrown.
 */
export async function streamExport(exp: ExportStream, res: ServerResponse, fileName: string): Promise<void> {
  res.statusCode = 200;
  res.setHeader('Content-Type', exp.contentType);
  res.setHeader('Content-Disposition', `attachment; filename="${fileName}"`);
  if (exp.length !== undefined) res.setHeader('Content-Length', String(exp.length));
  if (res.req?.method === 'HEAD') {
    res.end();
    return;
  }
  res.flushHeaders();
  await pipeline(Readable.from(exp.chunks, { objectMode: false }), res);
}
