import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { BufferDisk, DiskError, type Disk } from '@vmkeep/disk';
import { parseRange, startByteDownload, streamDisk } from './disk-stream';

describe('parseRange', () => {
  const size = 1000;
  it('reads first-last, open-ended and suffix ranges', () => {
    expect(parseRange('bytes=0-99', size)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=900-5000', size)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=10-', size)).toEqual({ start: 10, end: 999 });
    expect(parseRange('bytes=-100', size)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=-5000', size)).toEqual({ start: 0, end: 999 });
  });

  it('ignores what it does not support and refuses ranges outside the resource', () => {
    expect(parseRange(undefined, size)).toBeUndefined();
    expect(parseRange('items=0-1', size)).toBeUndefined();
    expect(parseRange('bytes=0-1,5-6', size)).toBeUndefined();
    expect(parseRange('bytes=9-3', size)).toBeUndefined();
    expect(parseRange('bytes=-', size)).toBeUndefined();
    expect(parseRange('bytes=1000-', size)).toBe('unsatisfiable');
    expect(parseRange('bytes=1000-2000', size)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', size)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
  });
});

/** A response stand-in with a tiny buffer, so that writes report backpressure. */
function slowResponse(): { res: ServerResponse; sink: PassThrough } {
  const sink = new PassThrough({ highWaterMark: 16 });
  return { res: sink as unknown as ServerResponse, sink };
}

describe('streamDisk', () => {
  it('waits for the reader between reads and sends exactly the range', async () => {
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    const reads: number[] = [];
    const disk = new BufferDisk(data);
    const spy: Disk = { size: disk.size, extents: () => disk.extents(), close: () => disk.close(), read: (o, l) => (reads.push(o), disk.read(o, l)) };
    const { res, sink } = slowResponse();
    const done = streamDisk(spy, res, { start: 100, end: 8999 }, 4096);
    await new Promise((r) => setTimeout(r, 20));
    // Nobody reads the sink yet: only the first piece went out.
    expect(reads).toEqual([100]);
    const parts: Buffer[] = [];
    sink.on('data', (c: Buffer) => parts.push(c));
    await done;
    expect(reads).toEqual([100, 4096, 8192]);
    expect(Buffer.concat(parts)).toEqual(data.subarray(100, 9000));
  });

  it('destroys the response on a read error instead of sending anything else', async () => {
    const failing: Disk = {
      size: 8192,
      extents: async () => [],
      close: async () => undefined,
      read: async (offset, length) => {
        if (offset >= 4096) throw new DiskError('chunk missing', 'test', offset);
        return Buffer.alloc(length, 7);
      },
    };
    const { res, sink } = slowResponse();
    const parts: Buffer[] = [];
    sink.on('data', (c: Buffer) => parts.push(c));
    sink.on('error', () => undefined);
    await expect(streamDisk(failing, res, { start: 0, end: 8191 }, 4096)).rejects.toThrow(/chunk missing/);
    expect(sink.destroyed).toBe(true);
    expect(Buffer.concat(parts).length).toBeLessThanOrEqual(4096);
  });
});

describe('startByteDownload', () => {
  /** A real ServerResponse to a `method` request, not attached to a socket. */
  function response(method = 'GET'): ServerResponse {
    const req = new IncomingMessage(new Socket());
    req.method = method;
    return new ServerResponse(req);
  }

  it('sets 200 or 206 headers and returns the span to send', () => {
    const whole = response();
    expect(startByteDownload(whole, undefined, 1000, 'attachment; filename="a.raw"')).toEqual({ start: 0, end: 999 });
    expect(whole.statusCode).toBe(200);
    expect(whole.getHeaders()).toEqual({
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'content-disposition': 'attachment; filename="a.raw"',
      'content-length': '1000',
    });
    const part = response();
    expect(startByteDownload(part, 'bytes=10-19', 1000, 'attachment')).toEqual({ start: 10, end: 19 });
    expect(part.statusCode).toBe(206);
    expect(part.getHeaders()).toMatchObject({ 'content-range': 'bytes 10-19/1000', 'content-length': '10' });
  });

  it('completes 416, empty and HEAD responses itself', () => {
    const outside = response();
    expect(startByteDownload(outside, 'bytes=1000-', 1000, 'attachment')).toBeUndefined();
    expect(outside.statusCode).toBe(416);
    expect(outside.getHeaders()).toEqual({ 'accept-ranges': 'bytes', 'content-range': 'bytes */1000' });
    expect(outside.writableEnded).toBe(true);
    const empty = response();
    expect(startByteDownload(empty, undefined, 0, 'attachment')).toBeUndefined();
    expect([empty.statusCode, empty.getHeader('content-length'), empty.writableEnded]).toEqual([200, '0', true]);
    const head = response('HEAD');
    expect(startByteDownload(head, undefined, 1000, 'attachment')).toBeUndefined();
    expect([head.statusCode, head.getHeader('content-length'), head.writableEnded]).toEqual([200, '1000', true]);
  });
});
