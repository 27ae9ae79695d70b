/**
 * Readers for the values node-soap produces from vim25 XML. Values typed xsd:anyType in the WSDL (property
 * values, task results, fault details) are parsed generically: text becomes a string, an element with
 * attributes becomes `{ attributes, $value }`, a repeated element becomes an array and a single one does not.
 * These helpers turn that into typed values without caring which of those shapes arrived.
 */
import type { MoRef } from './types';

export type SoapValue = unknown;
type SoapObject = Record<string, unknown>;

function isObject(value: SoapValue): value is SoapObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The element's attributes (node-soap's `attributes` key). */
function attributes(value: SoapValue): Record<string, string> {
  const attrs = isObject(value) ? value.attributes : undefined;
  return isObject(attrs) ? (attrs as Record<string, string>) : {};
}

/**
 * The xsi:type of an element, without namespace prefix. Hosts spell the attribute "xsi:type" or
 * "XMLSchema-instance:type" (vcsim); any prefixed "type" attribute counts, the plain "type" of a MoRef does not.
 */
export function xsiType(value: SoapValue): string | undefined {
  for (const [name, type] of Object.entries(attributes(value))) {
    if (name.endsWith(':type') && typeof type === 'string') return type.slice(type.indexOf(':') + 1);
  }
  return undefined;
}

/** Text content of an element, or undefined when absent. */
export function text(value: SoapValue): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return value.toISOString();
  if (isObject(value) && '$value' in value) return text(value.$value);
  return undefined;
}

export function int(value: SoapValue): number | undefined {
  const raw = text(value);
  if (raw === undefined || raw.trim() === '') return undefined;
  const parsed = Number(raw);
  return Number.isFinite(parsed) ? parsed : undefined;
}

export function bool(value: SoapValue): boolean | undefined {
  const raw = text(value);
  if (raw === undefined) return undefined;
  return raw === 'true' || raw === '1';
}

/** A value that may be one element or a repeated one, as an array. */
export function list(value: SoapValue): SoapValue[] {
  if (value === null || value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** A field of a data object. */
export function field(value: SoapValue, name: string): SoapValue {
  return isObject(value) ? value[name] : undefined;
}

/** The items of an ArrayOfX value (`<val xsi:type="ArrayOfX"><X>..</X>...</val>`), or a plain list. */
export function arrayItems(value: SoapValue): SoapValue[] {
  if (Array.isArray(value)) return value;
  if (!isObject(value)) return list(value);
  const type = xsiType(value);
  if (type?.startsWith('ArrayOf')) {
    const itemKeys = Object.keys(value).filter((k) => k !== 'attributes');
    return itemKeys.flatMap((k) => list(value[k]));
  }
  return [value];
}

/** A managed object reference: `<x type="VirtualMachine">vm-42</x>`. */
export function moRef(value: SoapValue): MoRef | undefined {
  const id = text(value);
  const type = attributes(value).type;
  return id && type ? { type, value: id } : undefined;
}

/** A managed object reference as node-soap should serialise it. */
export function moRefArg(ref: MoRef): { attributes: { type: string }; $value: string } {
  return { attributes: { type: ref.type }, $value: ref.value };
}

export function sameRef(a: MoRef | undefined, b: MoRef | undefined): boolean {
  return !!a && !!b && a.type === b.type && a.value === b.value;
}

export function refKey(ref: MoRef): string {
  return `${ref.type}:${ref.value}`;
}
