import { parseCustomAttributes } from './custom-fields';

const def = (key: number, name: string) => ({ attributes: { 'xsi:type': 'CustomFieldDef' }, key: String(key), name, managedObjectType: 'VirtualMachine' });
const value = (key: number, v: string) => ({ attributes: { 'xsi:type': 'CustomFieldStringValue' }, key: String(key), value: v });

describe('parseCustomAttributes', () => {
  it('names each value by its field definition, from ArrayOf wrappers or plain lists', () => {
    const fields = { attributes: { 'xsi:type': 'ArrayOfCustomFieldDef' }, CustomFieldDef: [def(101, 'owner'), def(102, 'tier')] };
    const values = { attributes: { 'xsi:type': 'ArrayOfCustomFieldValue' }, CustomFieldValue: [value(101, 'web-team'), value(102, '1')] };
    expect(parseCustomAttributes(values, fields)).toEqual({ owner: 'web-team', tier: '1' });
    expect(parseCustomAttributes([value(102, '')], [def(102, 'tier')])).toEqual({ tier: '' });
  });

  it('leaves out values without a definition and answers {} when there is nothing', () => {
    expect(parseCustomAttributes([value(7, 'x')], [def(8, 'other')])).toEqual({});
    expect(parseCustomAttributes(undefined, undefined)).toEqual({});
  });

  it('takes the later value of a field set twice', () => {
    expect(parseCustomAttributes([value(1, 'old'), value(1, 'new')], [def(1, 'owner')])).toEqual({ owner: 'new' });
  });
});
