import * as path from 'node:path';
import { CliError } from '../context';
import { parseDuration, resolveLocation } from './repo';

describe('repo command helpers', () => {
  it('parses durations', () => {
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('7d')).toBe(7 * 86_400_000);
    for (const bad of ['', '5', 'h', '1x', '-1h', '1h-']) expect(() => parseDuration(bad)).toThrow(CliError);
  });

  it('takes --repo over VMKEEP_REPO, resolves paths, refuses S3 for now', () => {
    expect(resolveLocation('a/b', { VMKEEP_REPO: '/elsewhere' })).toBe(path.resolve('a/b'));
    expect(resolveLocation(undefined, { VMKEEP_REPO: 'file:///srv/repo' })).toBe('/srv/repo');
    expect(() => resolveLocation(undefined, {})).toThrow('use --repo PATH or set VMKEEP_REPO');
    expect(resolveLocation('s3://bucket/prefix/', {})).toBe('s3://bucket/prefix');
    expect(() => resolveLocation('ftp://x/y', {})).toThrow('unsupported repository location');
  });
});
