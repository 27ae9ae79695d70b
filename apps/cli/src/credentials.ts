import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * Tokens saved by `vmkeep login`, one per server URL, in a file only the user can read
 * (~/.config/vmkeep/credentials.json, mode 0600). A token is only ever sent to the URL it was issued by.
 */
export class CredentialStore {
  constructor(readonly file = path.join(os.homedir(), '.config', 'vmkeep', 'credentials.json')) {}

  tokenFor(url: string): string | undefined {
    return this.read()[url];
  }

  save(url: string, token: string): void {
    const all = { ...this.read(), [url]: token };
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ tokens: all }, null, 2) + '\n', { mode: 0o600 });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, this.file);
  }

  private read(): Record<string, string> {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch {
      return {};
    }
    try {
      const parsed = JSON.parse(text) as { tokens?: Record<string, string> };
      return parsed.tokens && typeof parsed.tokens === 'object' ? parsed.tokens : {};
    } catch {
      return {};
    }
  }
}
