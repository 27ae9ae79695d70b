import type { PolicySelection } from '@vmkeep/persistence';
import { exceededLimit } from './concurrency-gate';
import { PolicyValidationError } from './errors';
import { policyFields, policyInputOf } from './policy-input';
import { EMPTY_SELECTION, fullSelection, globToRegExp, selectionReason, selectVms, type SelectableVm } from './selection';

const vm = (id: string, name: string, more: Partial<SelectableVm> = {}): SelectableVm => ({
  id,
  name,
  hostName: 'vcenter-1',
  esxHost: 'esx-a',
  cluster: 'prod',
  datacenter: 'dc1',
  ...more,
});

const inventory = [
  vm('1', 'web-01'),
  vm('2', 'web-02', { esxHost: 'esx-b' }),
  vm('3', 'db-01', { cluster: 'data' }),
  vm('4', 'Web.test', { cluster: null, esxHost: null, hostName: 'esxi-lab', datacenter: 'lab' }),
  vm('5', 'mail', { cluster: 'office' }),
];

const sel = (s: Partial<PolicySelection>): PolicySelection => ({ ...EMPTY_SELECTION, ...s });

describe('VM selection', () => {
  it('turns globs into anchored, case-insensitive patterns with regex characters taken literally', () => {
    expect(globToRegExp('web-*').test('WEB-01')).toBe(true);
    expect(globToRegExp('web-?1').test('web-01')).toBe(true);
    expect(globToRegExp('web-?1').test('xweb-01')).toBe(false);
    expect(globToRegExp('web.test').test('webxtest')).toBe(false);
    expect(globToRegExp('a+(b)').test('a+(b)')).toBe(true);
  });

  it('selects by explicit id, name pattern, cluster, host and datacenter, with the reason', () => {
    expect(selectVms(sel({ namePatterns: ['web*'] }), inventory).map((v) => v.id)).toEqual(['1', '2', '4']);
    expect(selectVms(sel({ clusters: ['DATA', 'office'] }), inventory).map((v) => v.id)).toEqual(['3', '5']);
    expect(selectVms(sel({ hosts: ['esx-b', 'esxi-lab'] }), inventory).map((v) => v.id)).toEqual(['2', '4']);
    expect(selectVms(sel({ datacenters: ['lab'] }), inventory).map((v) => v.id)).toEqual(['4']);
    expect(selectionReason(sel({ vmIds: ['5'], clusters: ['office'] }), inventory[4])).toBe('explicit');
    expect(selectionReason(sel({ namePatterns: ['db-*'] }), inventory[2])).toBe('name db-*');
    expect(selectVms(EMPTY_SELECTION, inventory)).toEqual([]);
  });

  it('selects by folder path prefix, resource pool, tag and custom attribute', () => {
    const labelled = [
      vm('a', 'a', { folderPath: '/DC0/vm/prod/web', resourcePool: '/DC0/host/C0/Resources/gold', tags: [{ category: 'env', name: 'prod' }] }),
      vm('b', 'b', { folderPath: '/DC0/vm/production', resourcePool: '/DC0/host/C0/Resources/gold/sub', customAttributes: { Owner: 'web-team' } }),
      vm('c', 'c', { folderPath: null, resourcePool: '/DC0/host/C0/Resources/a%2fb', tags: null, customAttributes: null }),
      vm('d', 'd'),
    ];
    const ids = (s: Partial<PolicySelection>) => selectVms(sel(s), labelled).map((v) => v.id);
    expect(ids({ folders: ['/DC0/vm/prod'] })).toEqual(['a']);
    expect(ids({ folders: ['DC0/VM/'] })).toEqual(['a', 'b']);
    expect(ids({ resourcePools: ['GOLD'] })).toEqual(['a']);
    expect(ids({ resourcePools: ['/DC0/host/C0/Resources/gold'] })).toEqual(['a', 'b']);
    // A criterion with "/" is a path; a "/" inside a name is "%2f" there, as the inventory path spells it.
    expect(ids({ resourcePools: ['/dc0/host/c0/resources/A%2Fb'] })).toEqual(['c']);
    expect(ids({ tags: [{ category: 'Env', name: 'PROD' }] })).toEqual(['a']);
    expect(ids({ tags: [{ category: 'other', name: 'prod' }] })).toEqual([]);
    expect(ids({ customAttributes: [{ name: 'owner', value: 'web-*' }] })).toEqual(['b']);
    expect(ids({ customAttributes: [{ name: 'owner', value: 'db-*' }] })).toEqual([]);
    expect(selectionReason(sel({ folders: ['/DC0/vm/prod/'] }), labelled[0])).toBe('folder /DC0/vm/prod');
    expect(selectionReason(sel({ customAttributes: [{ name: 'owner', value: '*' }] }), labelled[1])).toBe('attribute owner=*');
    expect(selectVms(sel({ folders: ['/DC0/vm'], excludePatterns: ['a'] }), labelled).map((v) => v.id)).toEqual(['b']);
  });

  it('reads stored selections from before the new criteria existed (missing lists = empty)', () => {
    const old = { vmIds: [], namePatterns: ['web*'], clusters: [], hosts: [], datacenters: [], excludeVmIds: [], excludePatterns: [] };
    expect(selectVms(old, inventory).map((v) => v.id)).toEqual(['1', '2', '4']);
    expect(fullSelection(old)).toEqual({ ...EMPTY_SELECTION, namePatterns: ['web*'] });
  });

  it('applies exclusions over every other rule', () => {
    const s = sel({ clusters: ['prod'], vmIds: ['1'], excludeVmIds: ['1'], excludePatterns: ['*-02'] });
    expect(selectVms(s, inventory).map((v) => v.id)).toEqual([]);
    expect(selectVms(sel({ namePatterns: ['*'], excludePatterns: ['web*'] }), inventory).map((v) => v.name)).toEqual(['db-01', 'mail']);
  });
});

describe('concurrency limits', () => {
  const a = { host: 'esx-a', datastores: ['ds1'] };
  const b = { host: 'esx-b', datastores: ['ds2'] };
  it('names the limit a new job would exceed', () => {
    expect(exceededLimit({}, [a, a, b], a)).toBeUndefined();
    expect(exceededLimit({ global: 3 }, [a, a, b], b)).toBe('global: 3 active, limit 3');
    expect(exceededLimit({ perHost: 2 }, [a, a, b], a)).toBe('per host esx-a: 2 active, limit 2');
    expect(exceededLimit({ perHost: 2 }, [a, a, b], b)).toBeUndefined();
    expect(exceededLimit({ perDatastore: 1 }, [a], { host: 'esx-c', datastores: ['ds3', 'ds1'] })).toBe('per datastore ds1: 1 active, limit 1');
  });
});

describe('policy input', () => {
  const base = { name: ' nightly ', schedule: { daily: '22:00', timeZone: 'Europe/Berlin' } };

  it('fills defaults and round-trips through policyInputOf', () => {
    const fields = policyFields(base);
    expect(fields).toMatchObject({
      name: 'nightly',
      enabled: true,
      cron: '0 22 * * *',
      timeZone: 'Europe/Berlin',
      windowStart: null,
      retention: { keepLast: 7 },
      quiesce: 'try',
      cbt: true,
      retries: 0,
      selection: EMPTY_SELECTION,
    });
    expect(policyFields(policyInputOf(fields))).toEqual(fields);
  });

  it('normalizes folder paths and de-duplicates tags and attributes (case-insensitively)', () => {
    const fields = policyFields({
      ...base,
      selection: {
        folders: [' DC0/vm/prod/ ', '/DC0/vm/prod'],
        tags: [{ category: 'env', name: 'prod' }, { category: 'ENV', name: 'Prod' }],
        customAttributes: [{ name: ' owner ', value: 'web-*' }],
      },
    });
    expect(fields.selection).toMatchObject({ folders: ['/DC0/vm/prod'], tags: [{ category: 'ENV', name: 'Prod' }], customAttributes: [{ name: 'owner', value: 'web-*' }] });
  });

  it.each([
    [{ name: '  ' }, 'name: must not be empty'],
    [{ retention: { keepLast: 0 } }, 'retention: the policy keeps nothing'],
    [{ window: { start: '22:00', end: '22:00' } }, 'window: start and end are equal'],
    [{ window: { start: '25:00', end: '01:00' } }, 'window.start: expected HH:MM'],
    [{ concurrency: { perHost: 0 } }, 'concurrency.perHost: must be a whole number'],
    [{ quiesce: 'always' }, 'quiesce: must be one of require, try, never'],
    [{ selection: { namePatterns: [''] } }, 'selection.namePatterns: must be a list of non-empty strings'],
    [{ selection: { folders: ['//'] } }, 'selection.folders: a folder path must name a folder'],
    [{ selection: { tags: [{ category: 'env', name: ' ' }] } }, 'selection.tags[0]: must be a list of { category, name }'],
    [{ selection: { tags: 'env:prod' } }, 'selection.tags: must be a list of { category, name }'],
    [{ selection: { customAttributes: [{ name: 'owner' }] } }, 'selection.customAttributes[0]: must be a list of { name, value }'],
  ])('refuses %j naming the field', (change, message) => {
    expect(() => policyFields({ ...base, ...(change as object) })).toThrow(PolicyValidationError);
    expect(() => policyFields({ ...base, ...(change as object) })).toThrow(message);
  });
});
