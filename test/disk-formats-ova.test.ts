/**
 * OVA packages made with `tar` from an OVF we write and streamOptimized VMDKs from qemu-img: listing without
 * unpacking, OVF metadata, disks read in place byte-exact, and broken packages refused with typed errors.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import {
  BufferSource, detectFormat, DiskFormatError, FileSource, listTar, MemberSource, MissingFileError, openImage, openOvaDisk, readOva, UnsupportedFormatError,
} from '@vmkeep/disk-formats';
import { buildRandomZeroImage, seededBytes } from './peers/disk-images';
import { MiB, qemuImg, qemuRaw, sha } from './peers/vhd-fixtures';

const exec = promisify(execFile);
let dir: string;
let disk1Data: Buffer;
let disk2Data: Buffer;
const LONG = `${'very-long-folder-name-'.repeat(4)}/${'disk-'.repeat(12)}2.vmdk`;

function ovf(opts: { disk2Href?: string; compression?: string } = {}): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- written by the VMKeep tests; <File> in a comment must be ignored -->
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:id="file1" ovf:href="disk1.vmdk"${opts.compression ? ` ovf:compression="${opts.compression}"` : ''}/>
    <File ovf:id="file2" ovf:href="${opts.disk2Href ?? LONG}"></File>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
    <Disk ovf:capacity="${4 * MiB}" ovf:diskId="vmdisk2" ovf:fileRef="file2"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="1024"/>
    <Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="blank"/>
  </DiskSection>
  <VirtualSystem ovf:id="vm"><Name>demo &amp; test</Name></VirtualSystem>
</Envelope>
`;
}

async function makeOva(name: string, descriptor: string, format: 'ustar' | 'pax' | 'gnu' = 'pax', members?: string[]): Promise<string> {
  const work = path.join(dir, 'work');
  await fs.writeFile(path.join(work, 'demo.ovf'), descriptor);
  const out = path.join(dir, name);
  await exec('tar', ['-cf', out, `--format=${format}`, '-C', work, ...(members ?? ['demo.ovf', 'disk1.vmdk', LONG])]);
  return out;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-ova-'));
  const work = path.join(dir, 'work');
  await fs.mkdir(path.join(work, path.dirname(LONG)), { recursive: true });
  const raw1 = (await buildRandomZeroImage({ dir, sizeMiB: 8, seed: 'ova1' })).path;
  const raw2 = path.join(dir, 'raw2.img');
  await fs.writeFile(raw2, Buffer.concat([seededBytes('ova2', 'a', MiB), Buffer.alloc(3 * MiB)]));
  for (const [src, dst] of [[raw1, 'disk1.vmdk'], [raw2, LONG]]) {
    await qemuImg('convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, path.join(work, dst));
  }
  disk1Data = await qemuRaw(path.join(work, 'disk1.vmdk'), 'vmdk');
  disk2Data = await qemuRaw(path.join(work, LONG), 'vmdk');
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('OVA', () => {
  it.each(['pax', 'gnu'] as const)('lists members and OVF disks without unpacking (%s tar)', async (format) => {
    const file = await makeOva(`demo-${format}.ova`, ovf(), format);
    const pkg = await readOva(file);
    expect(pkg.ovfName).toBe('demo.ovf');
    expect(pkg.members.map((m) => m.name)).toEqual(['demo.ovf', 'disk1.vmdk', LONG]);
    expect(pkg.disks.map((d) => [d.diskId, d.capacity, d.member.name])).toEqual([
      ['vmdisk1', 8 * MiB, 'disk1.vmdk'],
      ['vmdisk2', 4 * MiB, LONG],
    ]);
    expect(pkg.ovf.disks.find((d) => d.diskId === 'blank')?.capacity).toBe(1024 ** 3);
    expect(pkg.disks[1].populatedSize).toBe(1024);
    // Member windows are the archived files' bytes.
    const archive = await FileSource.open(file);
    const member = new MemberSource(archive, pkg.disks[0].member, true);
    try {
      const vmdk = await fs.readFile(path.join(dir, 'work', 'disk1.vmdk'));
      expect(member.size).toBe(vmdk.length);
      expect((await member.read(0, member.size, 'test')).equals(vmdk)).toBe(true);
      await expect(member.read(member.size - 10, 11, 'test')).rejects.toBeInstanceOf(DiskFormatError);
    } finally {
      await member.close();
    }
  });

  it('opens its disks in place, byte-exact, by position or diskId, and through openImage', async () => {
    // ustar keeps the long member name in its prefix field.
    const file = await makeOva('demo.ova', ovf(), 'ustar');
    expect((await readOva(file)).members.map((m) => m.name)).toContain(LONG);
    expect(await detectFormat(file)).toBe('ova');
    const first = await openImage(file);
    try {
      expect(first.size).toBe(8 * MiB);
      expect(first.info.metadata.ovaDiskId).toBe('vmdisk1');
      expect(first.info.files).toEqual(['demo.ova', 'disk1.vmdk']);
      expect(sha(await first.read(0, first.size))).toBe(sha(disk1Data));
    } finally {
      await first.close();
    }
    const second = await openOvaDisk(file, 'vmdisk2');
    try {
      expect(sha(await second.read(0, second.size))).toBe(sha(disk2Data));
      const extents = await second.extents();
      expect(extents[0].offset).toBe(0);
      expect(extents.reduce((n, e) => n + e.length, 0)).toBeLessThan(second.size);
    } finally {
      await second.close();
    }
    await expect(openOvaDisk(file, 'nope')).rejects.toBeInstanceOf(MissingFileError);
    await expect(openOvaDisk(file, 2)).rejects.toBeInstanceOf(MissingFileError);
  });

  it('refuses broken packages with typed errors', async () => {
    const missing = await makeOva('missing.ova', ovf({ disk2Href: 'elsewhere.vmdk' }));
    await expect(readOva(missing)).rejects.toThrow(/not in the archive/);
    const gz = await makeOva('gz.ova', ovf({ compression: 'gzip' }));
    await expect(openOvaDisk(gz, 0)).rejects.toBeInstanceOf(UnsupportedFormatError);

    const noOvf = path.join(dir, 'no-ovf.tar');
    await exec('tar', ['-cf', noOvf, '-C', path.join(dir, 'work'), 'disk1.vmdk']);
    expect(await detectFormat(noOvf)).toBe('raw');
    await expect(readOva(noOvf)).rejects.toThrow(/no \.ovf/);
    await expect(openOvaDisk(missing, 0)).rejects.toBeInstanceOf(MissingFileError);

    const good = await fs.readFile(await makeOva('good.ova', ovf()));
    const badSum = Buffer.from(good);
    const members = await listTar(new BufferSource('good.ova', good));
    const hdr = members[1].offset - 512;
    badSum[hdr + 20] ^= 1;
    const badFile = path.join(dir, 'bad-sum.ova');
    await fs.writeFile(badFile, badSum);
    const err = await readOva(badFile).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(DiskFormatError);
    expect((err as DiskFormatError).structure).toBe('tar header');

    const truncated = path.join(dir, 'truncated.ova');
    await fs.writeFile(truncated, good.subarray(0, members[1].offset + 1000));
    await expect(readOva(truncated)).rejects.toThrow(/past the end of the archive/);

    const badXml = await makeOva('bad-xml.ova', '<notovf/>');
    await expect(readOva(badXml)).rejects.toThrow(/no Envelope/);
    const badUnits = await makeOva('bad-units.ova', ovf().replace('byte * 2^20', 'furlongs'));
    await expect(readOva(badUnits)).rejects.toThrow(/capacityAllocationUnits/);
  });
});
