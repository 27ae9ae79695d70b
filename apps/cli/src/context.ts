import { loadCliConfig } from '@vmkeep/config';
import { ApiClient } from './api-client';
import { CredentialStore } from './credentials';

/** Options every command accepts. */
export interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

/** A mistake in how the CLI was called or in what the user asked for (unknown VM name, ...). */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** Where a command writes; tests pass their own. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
}

/** What a command needs: the API client, the output mode and the streams. */
export class CliContext {
  readonly url: string;
  readonly json: boolean;
  readonly client: ApiClient;

  constructor(
    opts: GlobalOptions,
    readonly io: CliIo,
    readonly credentials = new CredentialStore(),
  ) {
    const config = loadCliConfig({ url: opts.url, token: opts.token });
    this.url = config.url;
    this.json = opts.json === true;
    this.client = new ApiClient(config.url, config.token ?? credentials.tokenFor(config.url));
  }

  /** Machine output with --json, else the human rendering; either ends with exactly one newline. */
  print(data: unknown, human: () => string): void {
    const text = this.json ? JSON.stringify(data, null, 2) : human();
    this.io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Human-only remark (on stderr, so --json output stays clean). */
  note(text: string): void {
    if (!this.json) this.io.stderr.write(text + '\n');
  }

  /** The password of --password-stdin or --password; `whose` names it in the error when neither was given. */
  async password(opts: { password?: string; passwordStdin?: boolean }, whose: string): Promise<string> {
    const password = opts.passwordStdin ? await this.readStdin() : opts.password;
    if (!password) throw new CliError(`give the ${whose} with --password-stdin (or --password)`);
    return password;
  }

  /** Whole stdin as text, without the final newline (for --password-stdin). */
  async readStdin(): Promise<string> {
    const parts: Buffer[] = [];
    for await (const chunk of this.io.stdin) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    return Buffer.concat(parts).toString('utf8').replace(/\r?\n$/, '');
  }
}
