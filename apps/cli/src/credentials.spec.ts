import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CredentialStore } from './credentials';

describe('CredentialStore', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-cred-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps one token per URL in a file only the user can read', () => {
    const store = new CredentialStore(path.join(dir, 'cfg', 'vmkeep', 'credentials.json'));
    expect(store.tokenFor('http://a')).toBeUndefined();
    store.save('http://a', 'tok-a');
    store.save('http://b', 'tok-b');
    store.save('http://a', 'tok-a2');
    expect(store.tokenFor('http://a')).toBe('tok-a2');
    expect(store.tokenFor('http://b')).toBe('tok-b');
    expect(store.tokenFor('http://c')).toBeUndefined();
    expect(fs.statSync(store.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(store.file)).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.dirname(store.file))).toEqual(['credentials.json']);
  });

  it('treats a damaged file as empty', () => {
    const file = path.join(dir, 'credentials.json');
    fs.writeFileSync(file, '{not json');
    const store = new CredentialStore(file);
    expect(store.tokenFor('http://a')).toBeUndefined();
    store.save('http://a', 't');
    expect(new CredentialStore(file).tokenFor('http://a')).toBe('t');
  });
});
