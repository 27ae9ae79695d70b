import { DiskError } from '@vmkeep/disk';
import type { VimConnection } from './connection';
import { openDatastoreDisk } from './datastore-disk';
import type { HttpResponse } from './http';
import type { VmDiskInfo } from './types';

const DATA = Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 31) % 251));
const DESCRIPTOR = Buffer.from('# Disk DescriptorFile\nversion=1\nCID=fffffffe\ncreateType="vmfs"\nRW 16 VMFS "d-flat.vmdk"\n');
const DISK: VmDiskInfo = { key: 2000, label: 'Hard disk 1', capacityBytes: 8192, fileName: '[ds1] vm/d.vmdk', datastore: 'ds1' };

type Tamper = (url: string, start: number, end: number, response: HttpResponse) => HttpResponse;

/** A stand-in for the connection's GET that serves the descriptor and flat file, optionally tampered with. */
function fakeConnection(tamper: Tamper = (_u, _s, _e, r) => r) {
  const requests: string[] = [];
  /** The buffer each GET was asked to fill (undefined: none). */
  const intos: (Buffer | undefined)[] = [];
  const connection = {
    async get(url: string, headers: Record<string, string>, _maxBytes: number, into?: Buffer): Promise<HttpResponse> {
      intos.push(into);
      requests.push(`${url} ${headers.Range}`);
      const file = url.startsWith('/folder/vm/d.vmdk?') ? DESCRIPTOR : url.startsWith('/folder/vm/d-flat.vmdk?') ? DATA : undefined;
      if (!file) return { status: 404, headers: {}, body: Buffer.alloc(0) };
      const [, a, b] = /bytes=(\d+)-(\d+)/.exec(headers.Range)!.map(Number);
      const end = Math.min(b, file.length - 1);
      const body = into && into.length === end - a + 1 ? into : Buffer.from(file.subarray(a, end + 1));
      if (body === into) file.copy(into, 0, a, end + 1);
      const response = { status: 206, headers: { 'content-range': `bytes ${a}-${end}/${file.length}` }, body };
      return tamper(url, a, end, response);
    },
  };
  return { connection: connection as unknown as VimConnection, requests, intos };
}

describe('datastore disk reader', () => {
  it('reads the flat extent named by the descriptor, with the datacenter and datastore in the query', async () => {
    const { connection, requests } = fakeConnection();
    const disk = await openDatastoreDisk(connection, 'DC0', DISK);
    expect(disk.size).toBe(8192);
    expect((await disk.read(100, 333)).equals(DATA.subarray(100, 433))).toBe(true);
    expect(requests.at(-1)).toBe('/folder/vm/d-flat.vmdk?dcPath=DC0&dsName=ds1 bytes=100-432');
  });

  it('receives a range into a buffer given back by release(), never into one a failed attempt used', async () => {
    let failures = 0;
    const { connection, intos } = fakeConnection((url, start, end, response) => {
      if (start === 0 && failures-- > 0) throw new Error('socket hang up');
      return response;
    });
    const disk = await openDatastoreDisk(connection, 'DC0', DISK, { retryBaseMs: 1 });
    const first = await disk.read(0, 4096);
    disk.release?.(first);
    disk.release?.(Buffer.alloc(8192).subarray(0, 4096)); // a view: not kept
    const second = await disk.read(4096, 4096);
    expect(second).toBe(first);
    expect(second.equals(DATA.subarray(4096, 8192))).toBe(true);
    expect((await disk.read(0, 4096)).equals(DATA.subarray(0, 4096))).toBe(true); // no spare left: a new buffer
    disk.release?.(second);
    failures = 1;
    intos.length = 0;
    const third = await disk.read(0, 4096);
    expect(third.equals(DATA.subarray(0, 4096))).toBe(true);
    expect(intos).toEqual([second, undefined]); // the retry got no buffer of the failed attempt
    expect(third).not.toBe(second);
  });

  it('rejects a mismatching Content-Range with a DiskError naming the file and offset, after retrying', async () => {
    const { connection, requests } = fakeConnection((url, start, end, response) =>
      start === 4096 ? { ...response, headers: { 'content-range': `bytes 0-${end - start}/8192` } } : response,
    );
    const disk = await openDatastoreDisk(connection, 'DC0', DISK, { retries: 2, retryBaseMs: 1 });
    const error = await disk.read(4096, 16).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DiskError);
    expect((error as DiskError).message).toBe('[ds1] vm/d.vmdk @4096: Content-Range "bytes 0-15/8192" does not match the requested bytes 4096-4111');
    expect(requests.filter((r) => r.endsWith('bytes=4096-4111'))).toHaveLength(3);
  });

  it('recovers when a retry succeeds, and refuses a 200 answer to a range request', async () => {
    let failures = 1;
    const flaky = fakeConnection((url, start, end, response) => {
      if (start === 1000 && failures-- > 0) throw new Error('socket hang up');
      return response;
    });
    const disk = await openDatastoreDisk(flaky.connection, 'DC0', DISK, { retryBaseMs: 1 });
    expect((await disk.read(1000, 10)).equals(DATA.subarray(1000, 1010))).toBe(true);

    const whole = fakeConnection((url, start, end, response) => (start === 2000 ? { ...response, status: 200 } : response));
    const disk2 = await openDatastoreDisk(whole.connection, 'DC0', DISK, { retries: 0 });
    await expect(disk2.read(2000, 10)).rejects.toThrow(/expected HTTP 206 for bytes 2000-2009, got HTTP 200/);
  });

  it('refuses reads past the end, short bodies and disks it cannot read', async () => {
    const short = fakeConnection((url, start, end, response) => (start === 10 ? { ...response, body: response.body.subarray(1) } : response));
    const disk = await openDatastoreDisk(short.connection, 'DC0', DISK, { retries: 0 });
    await expect(disk.read(8000, 200)).rejects.toThrow(DiskError);
    await expect(disk.read(10, 5)).rejects.toThrow(/got 4 bytes, expected 5/);
    await disk.close();
    await expect(disk.read(0, 1)).rejects.toThrow(/read after close/);

    const { connection } = fakeConnection();
    await expect(openDatastoreDisk(connection, 'DC0', { ...DISK, fileName: 'no brackets.vmdk' })).rejects.toThrow(/not a datastore path/);
    await expect(openDatastoreDisk(connection, 'DC0', { ...DISK, fileName: '[ds1] ../etc/passwd' })).rejects.toThrow(/\.\./);
    await expect(openDatastoreDisk(connection, 'DC0', { ...DISK, fileName: '[ds1] vm/gone.vmdk' })).rejects.toThrow(/HTTP 404/);
  });
});
