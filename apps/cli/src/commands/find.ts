import type { Command } from 'commander';
import { bytes, table } from '../format';
import type { Runner } from '../program';
import { resolveVm } from '../resources';

interface SearchView {
  hits: {
    vmId: string;
    vmName: string | null;
    volume: string;
    path: string;
    versions: { type: string; size: number; mtime: string; points: { id: string; createdAt: string }[] }[];
  }[];
  truncated: boolean;
  pointsSearched: number;
  unindexedPoints: string[];
  /** Repositories the server could not search (older servers leave it out). */
  unavailableRepositories?: { id: string | null; name: string | null; location: string; reason: string; points: number }[];
}

interface FindOptions {
  vm?: string;
  caseSensitive?: boolean;
  type?: string;
  limit?: string;
}

/**
 * `vmkeep files find PATTERN [--vm VM]`: searches the guest file index of the restore points. Attaches to the
 * `files` command group when another module created it, else creates the group.
 */
export function registerFind(program: Command, run: Runner): void {
  const files = program.commands.find((c) => c.name() === 'files') ?? program.command('files').description('files inside restore points');
  files
    .command('find')
    .description('find files by name across restore points (glob: * ** ? [a-z], or a substring; "/" matches the path)')
    .argument('<pattern>', 'glob or substring')
    .option('--vm <vm>', 'only restore points of this VM (name or id)')
    .option('--case-sensitive', 'match case exactly (default: ignore case)')
    .option('--type <type>', 'only file, directory, symlink or other')
    .option('--limit <n>', 'most paths shown (default 1000)')
    .action(
      run(async (ctx, opts: FindOptions, pattern: string) => {
        const query = new URLSearchParams({ q: pattern });
        if (opts.vm) query.set('vm', (await resolveVm(ctx, opts.vm)).id);
        if (opts.caseSensitive) query.set('ignoreCase', 'false');
        if (opts.type) query.set('type', opts.type);
        if (opts.limit) query.set('limit', opts.limit);
        const result = await ctx.client.get<SearchView>(`/api/search/files?${query}`);
        ctx.print(result, () => render(result));
        if (result.truncated) ctx.note(`more paths matched; narrow the pattern or raise --limit`);
        if (result.unindexedPoints.length) ctx.note(`${result.unindexedPoints.length} restore point(s) have no file index`);
        for (const repo of result.unavailableRepositories ?? []) {
          const name = repo.name ? `"${repo.name}" (${repo.location})` : repo.location;
          ctx.note(`warning: repository ${name} could not be searched, ${repo.points} restore point(s) skipped: ${repo.reason}`);
        }
      }),
    );
}

function render(result: SearchView): string {
  if (!result.hits.length) return `no match in ${result.pointsSearched} restore point(s)`;
  const rows: string[][] = [];
  for (const hit of result.hits) {
    for (const v of hit.versions) {
      const points = v.points.map((p) => p.id).join(',');
      rows.push([hit.vmName ?? hit.vmId, `${hit.volume}${hit.path}`, v.type, bytes(v.size), v.mtime, `${v.points.length}: ${points}`]);
    }
  }
  return table(['VM', 'PATH', 'TYPE', 'SIZE', 'MODIFIED', 'POINTS'], rows);
}
