import { FileSystemError } from '../errors';
import { lvmCrc } from './label';
import { MAX_METADATA_BYTES, parseLvmText } from './text';
import { parseVolumeGroup } from './vg';

const PV = (name: string, uuid: string, peCount = 10) =>
  `${name} {\n id = "${uuid}"\n device = "/dev/sdb1"\n pe_start = 2048\n pe_count = ${peCount}\n}\n`;

/** A VG text with two PVs and the given logical_volumes body. */
const vgWith = (lvs: string) => `# comment line
vg0 {
  id = "VGVGVG-1111-2222-3333-4444-5555-666666"
  seqno = 7
  extent_size = 8192 # 4 MiB
  physical_volumes {
    ${PV('pv0', 'AAAAAA-1111-2222-3333-4444-5555-666666')}
    ${PV('pv1', 'BBBBBB-1111-2222-3333-4444-5555-666666')}
  }
  logical_volumes {
${lvs}
  }
}
contents = "Text Format Volume Group"
version = 1
`;

const lv = (segments: string, count = 1) => `lv {
 id = "LVLVLV-1111-2222-3333-4444-5555-666666"
 status = ["READ", "WRITE", "VISIBLE"]
 segment_count = ${count}
 ${segments}
}`;

const expectError = (fn: () => unknown, pattern: RegExp) => {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(FileSystemError);
  expect((caught as Error).message).toMatch(pattern);
};

describe('parseLvmText', () => {
  test('reads sections, strings with escapes, integers, arrays and comments', () => {
    const root = parseLvmText('a {\n s = "x \\"q\\" # not a comment" # comment\n n = -12\n f = 1.5\n list = ["A", 3, ]\n empty = []\n b { }\n}\nversion = 1\n');
    const a = root.section('a');
    expect([a.str('s'), a.values.get('n'), a.values.get('f'), a.array('list'), a.strings('empty')]).toEqual(['x "q" # not a comment', -12, 1.5, ['A', 3], []]);
    expect([...a.sections.keys()]).toEqual(['b']);
    expect(root.int('version')).toBe(1);
  });

  test('keys such as __proto__ are plain map entries', () => {
    const root = parseLvmText('__proto__ = "x"\nconstructor { a = 1 }');
    expect(root.str('__proto__')).toBe('x');
    expect(root.section('constructor').int('a')).toBe(1);
    expect(({} as Record<string, unknown>).a).toBeUndefined();
  });

  test.each([
    ['an unterminated string', 'a = "abc', /line 1: unterminated string/],
    ['an unclosed section', 'vg {\n a = 1\n', /section "vg" is not closed/],
    ['a stray closing brace', 'a = 1 }', /unexpected "}"/],
    ['a duplicate key', 'a = 1\na = 2', /line 2: "a" appears twice/],
    ['deep nesting', `${'x { '.repeat(13)}${'} '.repeat(13)}`, /nested deeper than 12/],
    ['an integer beyond 2^53', 'a = 123456789012345678901', /out of range/],
    ['a missing "="', 'a 1', /expected "=" or "\{" after "a"/],
    ['an unclosed array', 'a = [1, 2', /expected a value|expected "," or "]"/],
    ['a nested array', 'a = [[1]]', /expected a value/],
    ['a control character', 'a = 1\n\u0001', /unexpected character/],
  ])('refuses %s with a typed error', (_title, text, pattern) => {
    expectError(() => parseLvmText(text), pattern);
  });

  test('refuses text over the size limit before parsing it', () => {
    expectError(() => parseLvmText(`a = "${'x'.repeat(MAX_METADATA_BYTES)}"`), /exceed the \d+-byte limit/);
  });

  test('typed accessors name the path of a missing or mistyped value', () => {
    const root = parseLvmText('vg { a = "x" n = -1 }');
    expectError(() => root.section('vg').int('a'), /vg\.a: expected an integer/);
    expectError(() => root.section('vg').int('n'), /vg\.n: expected an integer/);
    expectError(() => root.section('vg').section('physical_volumes'), /vg: section "physical_volumes" is missing/);
  });
});

describe('parseVolumeGroup', () => {
  test('builds linear and striped segments with byte sizes and dash-free UUIDs', () => {
    const vg = parseVolumeGroup(vgWith(`${lv(`segment1 { start_extent = 0 extent_count = 2 type = "striped" stripe_count = 1 stripes = ["pv0", 3] }
      segment2 { start_extent = 2 extent_count = 4 type = "striped" stripe_count = 2 stripe_size = 128 stripes = ["pv0", 5, "pv1", 0] }`, 2)}
      hidden { id = "x" status = ["READ"] segment_count = 1 segment1 { start_extent = 0 extent_count = 1 type = "thin-pool" } }`));
    expect([vg.name, vg.uuid, vg.seqno, vg.extentSize]).toEqual(['vg0', 'VGVGVG11112222333344445555666666', 7, 4 * 1024 * 1024]);
    expect(vg.pvs.get('pv1')).toEqual({ name: 'pv1', uuid: 'BBBBBB11112222333344445555666666', device: '/dev/sdb1', peStart: 1024 * 1024, peCount: 10 });
    expect(vg.lvs[0]).toEqual({
      name: 'lv', uuid: 'LVLVLV11112222333344445555666666', visible: true, segments: [
        { startExtent: 0, extentCount: 2, type: 'striped', stripeSize: 0, stripes: [{ pv: 'pv0', extent: 3 }] },
        { startExtent: 2, extentCount: 4, type: 'striped', stripeSize: 65536, stripes: [{ pv: 'pv0', extent: 5 }, { pv: 'pv1', extent: 0 }] },
      ],
    });
    expect(vg.lvs[1]).toMatchObject({ name: 'hidden', visible: false, segments: [{ type: 'thin-pool', stripes: [] }] });
  });

  const seg = (body: string) => vgWith(lv(`segment1 { start_extent = 0 ${body} }`));
  test.each([
    ['extents beyond pe_count', seg('extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 8]'), /needs extents 8\.\.11 of pv0, which has 10/],
    ['an unknown PV', seg('extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv9", 0]'), /unknown physical volume "pv9"/],
    ['a negative start extent', seg('extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", -1]'), /invalid start extent/],
    ['stripes not matching stripe_count', seg('extent_count = 2 type = "striped" stripe_count = 2 stripe_size = 128 stripes = ["pv0", 0]'), /stripes holds 2 values, expected 4 \(a PV name and an extent per stripe\)/],
    ['extents not splitting into stripes', seg('extent_count = 3 type = "striped" stripe_count = 2 stripe_size = 128 stripes = ["pv0", 0, "pv1", 0]'), /do not split into 2 stripes/],
    ['a stripe size that is not a power of two', seg('extent_count = 2 type = "striped" stripe_count = 2 stripe_size = 100 stripes = ["pv0", 0, "pv1", 0]'), /not a power of two/],
    ['a zero extent count', seg('extent_count = 0 type = "striped" stripe_count = 1 stripes = ["pv0", 0]'), /extent_count is 0/],
    ['a gap between segments', vgWith(lv('segment1 { start_extent = 1 extent_count = 1 type = "striped" stripe_count = 1 stripes = ["pv0", 0] }')), /starts at extent 1, expected 0/],
    ['a missing segment', vgWith(lv('', 1)), /section "segment1" is missing/],
    ['a zero extent size', vgWith('').replace('extent_size = 8192', 'extent_size = 0'), /extent_size is 0/],
    ['two volume groups', `${vgWith('')}\nvg1 { }`, /expected one volume group section, found 2/],
    ['a huge segment count', vgWith(lv('', 10_000_000)), /segment_count: expected an integer/],
  ])('refuses %s', (_title, text, pattern) => {
    expectError(() => parseVolumeGroup(text), pattern);
  });
});

test('lvmCrc is the IEEE CRC-32 seeded with 0xf597a6cf and not inverted', () => {
  // With the standard seed and a final inversion it equals the usual CRC-32 ("123456789" → cbf43926).
  expect((lvmCrc(Buffer.from('123456789'), 0xffffffff) ^ 0xffffffff) >>> 0).toBe(0xcbf43926);
  expect(lvmCrc(Buffer.alloc(0))).toBe(0xf597a6cf);
});
