import type { PolicyConcurrency, PolicyEntity, PolicyRetention, PolicySelection, QuiesceMode } from '@vmkeep/persistence';
import { validateRetentionPolicy } from '@vmkeep/repository';
import { PolicyValidationError } from './errors';
import { compileSchedule, type ScheduleInput } from './schedule';
import { EMPTY_SELECTION, normalizeInventoryPath, type FullSelection } from './selection';
import { assertWindow, type BackupWindow } from './window';

export const QUIESCE_MODES: readonly QuiesceMode[] = ['require', 'try', 'never'];

/** A policy as the API and the CLI give it; every field but name and schedule has a default. */
export interface PolicyInput {
  name: string;
  enabled?: boolean;
  schedule: ScheduleInput;
  window?: BackupWindow | null;
  selection?: Partial<PolicySelection>;
  retention?: PolicyRetention;
  quiesce?: QuiesceMode;
  cbt?: boolean;
  priority?: number;
  concurrency?: PolicyConcurrency;
  retries?: number;
  retryBackoffSeconds?: number;
  /** Repository the backups go to (RepositoryEntity id); null/absent = the appliance's default repository. */
  repositoryId?: string | null;
}

/** The columns of a policy row that come from the input. */
export type PolicyFields = Omit<PolicyEntity, 'id' | 'createdAt' | 'updatedAt'>;

export const DEFAULT_RETENTION: PolicyRetention = { keepLast: 7 };

/** Checks what types cannot (cron, time zone, window, retention, limits) and fills the defaults. */
export function policyFields(input: PolicyInput): PolicyFields {
  const name = String(input.name ?? '').trim();
  if (!name) throw new PolicyValidationError('name', 'must not be empty');
  const { cron, timeZone } = compileSchedule(input.schedule ?? {});
  const window = input.window ?? null;
  if (window) assertWindow(window);
  const retention = input.retention ?? DEFAULT_RETENTION;
  try {
    validateRetentionPolicy(retention);
  } catch (err) {
    throw new PolicyValidationError('retention', (err as Error).message);
  }
  const quiesce = input.quiesce ?? 'try';
  if (!QUIESCE_MODES.includes(quiesce)) throw new PolicyValidationError('quiesce', `must be one of ${QUIESCE_MODES.join(', ')}`);
  const concurrency = input.concurrency ?? {};
  for (const key of ['global', 'perHost', 'perDatastore'] as const) {
    const v = concurrency[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new PolicyValidationError(`concurrency.${key}`, 'must be a whole number ≥ 1');
  }
  const selection = selectionFields(input.selection ?? {});
  return {
    name,
    enabled: input.enabled ?? true,
    cron,
    timeZone,
    schedule: { ...input.schedule, timeZone },
    windowStart: window?.start ?? null,
    windowEnd: window?.end ?? null,
    selection,
    retention,
    quiesce,
    cbt: input.cbt ?? true,
    priority: input.priority ?? 0,
    concurrency,
    retries: input.retries ?? 0,
    retryBackoffSeconds: input.retryBackoffSeconds ?? 60,
    repositoryId: input.repositoryId ?? null,
  };
}

/** The stored policy as an input again (to apply a partial update on top). */
export function policyInputOf(p: PolicyFields): PolicyInput {
  return {
    name: p.name,
    enabled: p.enabled,
    schedule: p.schedule as ScheduleInput,
    window: windowOf(p),
    selection: p.selection,
    retention: p.retention,
    quiesce: p.quiesce,
    cbt: p.cbt,
    priority: p.priority,
    concurrency: p.concurrency,
    retries: p.retries,
    retryBackoffSeconds: p.retryBackoffSeconds,
    repositoryId: p.repositoryId,
  };
}

const STRING_LISTS = ['vmIds', 'namePatterns', 'clusters', 'hosts', 'datacenters', 'folders', 'resourcePools', 'excludeVmIds', 'excludePatterns'] as const;

/** Validates every selection criterion (trimmed, de-duplicated; folder paths in one form); missing = empty. */
export function selectionFields(input: Partial<PolicySelection>): FullSelection {
  const selection: FullSelection = { ...EMPTY_SELECTION };
  for (const key of STRING_LISTS) {
    const list: unknown = input[key] ?? [];
    if (!Array.isArray(list) || list.some((v) => typeof v !== 'string' || v.trim() === '')) {
      throw new PolicyValidationError(`selection.${key}`, 'must be a list of non-empty strings');
    }
    const values = (list as string[]).map((v) => (key === 'folders' ? normalizeInventoryPath(v.trim()) : v.trim()));
    if (key === 'folders' && values.includes('/')) throw new PolicyValidationError('selection.folders', 'a folder path must name a folder, e.g. /DC0/vm/prod');
    selection[key] = [...new Set(values)];
  }
  selection.tags = pairs(input.tags, 'tags', ['category', 'name']).map(([category, name]) => ({ category, name }));
  selection.customAttributes = pairs(input.customAttributes, 'customAttributes', ['name', 'value']).map(([name, value]) => ({ name, value }));
  return selection;
}

/** A list of objects with two non-empty string members, trimmed and de-duplicated. */
function pairs(input: unknown, key: string, members: [string, string]): [string, string][] {
  const list: unknown = input ?? [];
  const problem = `must be a list of { ${members.join(', ')} } with non-empty strings`;
  if (!Array.isArray(list)) throw new PolicyValidationError(`selection.${key}`, problem);
  const seen = new Map<string, [string, string]>();
  for (const [i, item] of list.entries()) {
    const values = members.map((m) => (item as Record<string, unknown> | null)?.[m]);
    if (values.some((v) => typeof v !== 'string' || v.trim() === '')) throw new PolicyValidationError(`selection.${key}[${i}]`, problem);
    const pair = values.map((v) => (v as string).trim()) as [string, string];
    seen.set(pair.join('\u0000').toLowerCase(), pair);
  }
  return [...seen.values()];
}

export function windowOf(p: Pick<PolicyFields, 'windowStart' | 'windowEnd'>): BackupWindow | null {
  return p.windowStart && p.windowEnd ? { start: p.windowStart, end: p.windowEnd } : null;
}
