/**
 * Custom attributes (CustomFieldsManager fields) of a managed entity: `customValue` holds key → value, and
 * `availableField` the field definitions (key → name) that apply to the entity. Both are read with the
 * inventory's property retrieval; no extra call is needed.
 */
import { arrayItems, field, int, text, type SoapValue } from './values';

/** The entity's custom attributes by field name; values of fields without a definition are left out. */
export function parseCustomAttributes(customValue: SoapValue, availableField: SoapValue): Record<string, string> {
  const names = new Map<number, string>();
  for (const def of arrayItems(availableField)) {
    const key = int(field(def, 'key'));
    const name = text(field(def, 'name'));
    if (key !== undefined && name) names.set(key, name);
  }
  const attributes: Record<string, string> = {};
  for (const entry of arrayItems(customValue)) {
    const name = names.get(int(field(entry, 'key')) ?? NaN);
    // CustomFieldStringValue is the only value type vSphere defines; later entries win (a field set twice).
    if (name !== undefined) attributes[name] = text(field(entry, 'value')) ?? '';
  }
  return attributes;
}
