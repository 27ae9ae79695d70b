import type { Command } from 'commander';
import { CliError } from '../context';
import type { Runner } from '../program';

interface LoginResponse {
  token: string;
  expiresAt?: string;
  user?: { username: string; role: string };
}

export function registerAuth(program: Command, run: Runner): void {
  program
    .command('login')
    .description('log in and save the token for later commands (~/.config/vmkeep, mode 0600)')
    .option('--username <name>', 'user name', 'admin')
    .option('--password <password>', 'password (prefer --password-stdin: arguments are visible to other users)')
    .option('--password-stdin', 'read the password from standard input')
    .action(
      run(async (ctx, opts: { username: string; password?: string; passwordStdin?: boolean }) => {
        const password = await ctx.password(opts, 'password');
        const res = await ctx.client.post<LoginResponse>('/api/auth/login', { username: opts.username, password });
        if (!res?.token) throw new CliError('the server did not return a token');
        ctx.credentials.save(ctx.url, res.token);
        ctx.print(
          { url: ctx.url, username: opts.username, expiresAt: res.expiresAt ?? null, credentials: ctx.credentials.file },
          () => `logged in to ${ctx.url} as ${opts.username}; token saved in ${ctx.credentials.file}`,
        );
      }),
    );
}
