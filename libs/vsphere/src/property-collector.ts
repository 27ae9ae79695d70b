/**
 * Property collector helpers: specs for "these properties of these objects" and "everything of these types in a
 * ContainerView", and RetrievePropertiesEx paging (maxObjects + ContinueRetrievePropertiesEx with the token).
 */
import type { MoRef } from './types';
import { field, list, moRef, moRefArg, text, type SoapValue } from './values';

/** One object's properties as returned by the collector. */
export interface ObjectProps {
  ref: MoRef;
  props: Map<string, SoapValue>;
  /** Properties the host could not read (path → fault name). */
  missing: Map<string, string>;
}

/** The vim25 call the collector needs; the connection provides it (returns the operation's `returnval`). */
export type Invoke = (method: string, args: Record<string, unknown>) => Promise<SoapValue>;

export interface PropertyFilterSpec {
  propSet: { type: string; all?: boolean; pathSet?: string[] }[];
  objectSet: Record<string, unknown>[];
}

/** Spec for the given properties of explicit objects (all of one type). */
export function objectsSpec(type: string, refs: MoRef[], paths: string[]): PropertyFilterSpec {
  return {
    propSet: [{ type, pathSet: paths }],
    objectSet: refs.map((ref) => ({ obj: moRefArg(ref), skip: false })),
  };
}

/** Spec for properties of every object in a ContainerView, per type. */
export function containerViewSpec(view: MoRef, pathsByType: Record<string, string[]>): PropertyFilterSpec {
  return {
    propSet: Object.entries(pathsByType).map(([type, pathSet]) => ({ type, pathSet })),
    objectSet: [
      {
        obj: moRefArg(view),
        skip: true,
        selectSet: [
          {
            attributes: { 'xsi:type': 'TraversalSpec' },
            name: 'traverseView',
            type: 'ContainerView',
            path: 'view',
            skip: false,
          },
        ],
      },
    ],
  };
}

function parseObjects(result: SoapValue): ObjectProps[] {
  return list(field(result, 'objects')).flatMap((content) => {
    const ref = moRef(field(content, 'obj'));
    if (!ref) return [];
    const props = new Map<string, SoapValue>();
    for (const prop of list(field(content, 'propSet'))) {
      const name = text(field(prop, 'name'));
      if (name) props.set(name, field(prop, 'val'));
    }
    const missing = new Map<string, string>();
    for (const entry of list(field(content, 'missingSet'))) {
      const path = text(field(entry, 'path'));
      if (path) missing.set(path, 'missing');
    }
    return [{ ref, props, missing }];
  });
}

/**
 * RetrievePropertiesEx with paging: asks for at most `pageSize` objects per answer and follows the token
 * with ContinueRetrievePropertiesEx until the host has no more.
 */
export async function retrieveAll(
  invoke: Invoke,
  collector: MoRef,
  specs: PropertyFilterSpec[],
  pageSize: number,
): Promise<ObjectProps[]> {
  const objects: ObjectProps[] = [];
  let result = await invoke('RetrievePropertiesEx', {
    _this: moRefArg(collector),
    specSet: specs,
    options: { maxObjects: pageSize },
  });
  for (;;) {
    objects.push(...parseObjects(result));
    const token = text(field(result, 'token'));
    if (!token) return objects;
    result = await invoke('ContinueRetrievePropertiesEx', { _this: moRefArg(collector), token });
  }
}
