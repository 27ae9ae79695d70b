import { containerViewSpec, retrieveAll, type Invoke } from './property-collector';

const vm = (id: string, name: string) => ({
  obj: { attributes: { type: 'VirtualMachine' }, $value: id },
  propSet: { name: 'name', val: { attributes: { 'xsi:type': 'xsd:string' }, $value: name } },
});

describe('retrieveAll', () => {
  it('follows the token through ContinueRetrievePropertiesEx until the last page', async () => {
    const calls: { method: string; args: Record<string, unknown> }[] = [];
    const pages = [
      { token: 't1', objects: [vm('vm-1', 'a'), vm('vm-2', 'b')] },
      { token: 't2', objects: vm('vm-3', 'c') },
      { objects: [vm('vm-4', 'd')] },
    ];
    const invoke: Invoke = async (method, args) => {
      calls.push({ method, args });
      return pages[calls.length - 1];
    };
    const collector = { type: 'PropertyCollector', value: 'propertyCollector' };
    const objects = await retrieveAll(invoke, collector, [containerViewSpec({ type: 'ContainerView', value: 'v1' }, { VirtualMachine: ['name'] })], 2);

    expect(objects.map((o) => [o.ref.value, o.props.get('name')])).toEqual([
      ['vm-1', { attributes: { 'xsi:type': 'xsd:string' }, $value: 'a' }],
      ['vm-2', expect.anything()],
      ['vm-3', expect.anything()],
      ['vm-4', expect.anything()],
    ]);
    expect(calls.map((c) => c.method)).toEqual(['RetrievePropertiesEx', 'ContinueRetrievePropertiesEx', 'ContinueRetrievePropertiesEx']);
    expect(calls[0].args.options).toEqual({ maxObjects: 2 });
    expect(calls[1].args.token).toBe('t1');
    expect(calls[2].args.token).toBe('t2');
  });

  it('returns nothing for an empty result', async () => {
    const objects = await retrieveAll(async () => undefined, { type: 'PropertyCollector', value: 'pc' }, [], 10);
    expect(objects).toEqual([]);
  });
});

describe('containerViewSpec', () => {
  it('traverses the view with a typed TraversalSpec and skips the view itself', () => {
    const spec = containerViewSpec({ type: 'ContainerView', value: 'v1' }, { HostSystem: ['name'], Datastore: ['name', 'parent'] });
    expect(spec.propSet).toEqual([
      { type: 'HostSystem', pathSet: ['name'] },
      { type: 'Datastore', pathSet: ['name', 'parent'] },
    ]);
    expect(spec.objectSet[0]).toMatchObject({
      skip: true,
      selectSet: [{ attributes: { 'xsi:type': 'TraversalSpec' }, type: 'ContainerView', path: 'view', skip: false }],
    });
  });
});
