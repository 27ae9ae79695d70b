import { createHash } from 'node:crypto';
import { ConfigurationError } from './errors';
import { certificateThumbprints, formatThumbprint, normalizeThumbprint, parseHostUrl } from './tls';

describe('thumbprints', () => {
  const sha256 = createHash('sha256').update('cert').digest();
  const canonical = formatThumbprint(sha256);

  it('formats digests as colon-separated upper-case hex', () => {
    expect(formatThumbprint(Buffer.from([0x0a, 0xff, 0x10]))).toBe('0A:FF:10');
    expect(canonical).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('normalises pins written in any common way', () => {
    expect(normalizeThumbprint(sha256.toString('hex'))).toBe(canonical);
    expect(normalizeThumbprint(canonical.toLowerCase())).toBe(canonical);
    expect(normalizeThumbprint(` sha256:${canonical.replace(/:/g, ' ')} `)).toBe(canonical);
    const sha1 = createHash('sha1').update('cert').digest('hex');
    expect(normalizeThumbprint(sha1)).toHaveLength(59);
  });

  it('refuses malformed pins with a ConfigurationError', () => {
    expect(() => normalizeThumbprint('AB:CD')).toThrow(ConfigurationError);
    expect(() => normalizeThumbprint('zz'.repeat(32))).toThrow(ConfigurationError);
  });

  it('computes both digests of a DER certificate', () => {
    const der = Buffer.from('not really DER but bytes');
    const both = certificateThumbprints(der);
    expect(both.sha256).toBe(formatThumbprint(createHash('sha256').update(der).digest()));
    expect(both.sha1).toBe(formatThumbprint(createHash('sha1').update(der).digest()));
  });
});

describe('host URL', () => {
  it('accepts https URLs and defaults the port', () => {
    expect(parseHostUrl('https://vc.example/sdk')).toEqual({ hostname: 'vc.example', port: 443, origin: 'https://vc.example' });
    expect(parseHostUrl('https://[::1]:8443')).toMatchObject({ hostname: '::1', port: 8443 });
  });

  it('refuses plain http, embedded credentials and garbage', () => {
    expect(() => parseHostUrl('http://vc.example')).toThrow(ConfigurationError);
    expect(() => parseHostUrl('https://root:secret@vc.example')).toThrow(/must not contain credentials/);
    expect(() => parseHostUrl('vc.example')).toThrow(ConfigurationError);
  });
});
