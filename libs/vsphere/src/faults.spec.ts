import { AuthenticationError, CertificateError, ConnectionError, FaultError, NotFoundError, TaskError } from './errors';
import { faultNameFromDetail, mapSoapError, taskErrorFrom } from './faults';

/** The shape node-soap gives a SOAP fault: error.root.Envelope.Body.Fault. */
function soapFault(faultstring: string, detail: unknown): Error {
  return Object.assign(new Error(`ServerFaultCode: ${faultstring}`), {
    root: { Envelope: { Body: { Fault: { faultcode: 'ServerFaultCode', faultstring, detail } } } },
  });
}

describe('fault mapping', () => {
  it('maps vim25 faults to typed errors', () => {
    const login = mapSoapError(soapFault('Login failure', { InvalidLoginFault: { attributes: { 'xsi:type': 'InvalidLogin' } } }), 'vc1', 'Login');
    expect(login).toBeInstanceOf(AuthenticationError);
    expect(login.message).toBe('Login on vc1: Login failure');

    const gone = mapSoapError(
      soapFault('The object has already been deleted', {
        ManagedObjectNotFoundFault: { attributes: { 'XMLSchema-instance:type': 'ManagedObjectNotFound' }, obj: { attributes: { type: 'VirtualMachine' }, $value: 'vm-9' } },
      }),
      'vc1',
      'RetrievePropertiesEx',
    );
    expect(gone).toBeInstanceOf(NotFoundError);

    const locked = mapSoapError(soapFault('File is locked', { FileLockedFault: {} }), 'vc1', 'CreateSnapshot_Task');
    expect(locked).toBeInstanceOf(FaultError);
    expect((locked as FaultError).fault).toBe('FileLocked');
    expect(locked.message).toContain('File is locked');
  });

  it('reads the fault name from xsi:type first, else from the element name', () => {
    expect(faultNameFromDetail({ NotAuthenticatedFault: { attributes: { 'xsi:type': 'NotAuthenticated' } } })).toBe('NotAuthenticated');
    expect(faultNameFromDetail({ InvalidArgumentFault: null })).toBe('InvalidArgument');
    expect(faultNameFromDetail('text only')).toBeUndefined();
  });

  it('maps network failures to ConnectionError naming the host, found through causes', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
    const wrapped = Object.assign(new Error('Request failed'), { cause: refused, config: { data: '<password>hunter2</password>' } });
    const error = mapSoapError(wrapped, 'vc1.example', 'Login');
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toBe('cannot reach vc1.example (Login): ECONNREFUSED');
    expect(error.message).not.toContain('hunter2');
    expect(mapSoapError(Object.assign(new Error('timeout of 5ms exceeded'), { code: 'ECONNABORTED' }), 'h', 'X').message).toContain('timed out');
  });

  it('passes our own errors through (a certificate refusal from the TLS layer)', () => {
    const refusal = new CertificateError('not trusted', 'AA:BB');
    expect(mapSoapError(Object.assign(new Error('x'), { cause: refusal }), 'h', 'Login')).toBe(refusal);
  });

  it('turns a task error (LocalizedMethodFault) into TaskError with the fault name', () => {
    const error = taskErrorFrom(
      { fault: { attributes: { 'xsi:type': 'ApplicationQuiesceFault' } }, localizedMessage: 'Quiescing failed' },
      'snapshot of VM vm-1',
    );
    expect(error).toBeInstanceOf(TaskError);
    expect(error.fault).toBe('ApplicationQuiesceFault');
    expect(error.message).toBe('snapshot of VM vm-1 failed: Quiescing failed (ApplicationQuiesceFault)');
  });
});
