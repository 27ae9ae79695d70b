import { redactSecrets } from './redact';

describe('redactSecrets', () => {
  it.each([
    ['token vmk_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA used', 'token vmk_*** used'],
    ['Authorization: Bearer abc.def-123', 'Authorization: Bearer ***'],
    ['{"username":"root","password":"p\\"4ss w0rd"}', '{"username":"root","password":***}'],
    ['login?user=root&password=hunter2&x=1', 'login?user=root&password=***&x=1'],
    ['<vim25:userName>root</vim25:userName><vim25:password>s3cr3t</vim25:password>', '<vim25:userName>root</vim25:userName><vim25:password>***</vim25:password>'],
    ['connect mysql://vmkeep:Db-Pa55@db:3306/vmkeep failed', 'connect mysql://vmkeep:***@db:3306/vmkeep failed'],
    ['VMKEEP_PASSPHRASE=correct-horse-battery', 'VMKEEP_PASSPHRASE=***'],
    ['{"guestUser":"admin","guestPassword":"Gu3st!"}', '{"guestUser":"admin","guestPassword":***}'],
    ['webhook_secret: s3cr3t-value', 'webhook_secret: ***'],
    ['{"accessKeyId":"AKIA1","secretAccessKey":"wJalr/K7"}', '{"accessKeyId":"AKIA1","secretAccessKey":***}'],
    ['AWS_SECRET_ACCESS_KEY=wJalr/K7 aws', 'AWS_SECRET_ACCESS_KEY=*** aws'],
    ['sessionToken: FQoG/x', 'sessionToken: ***'],
  ])('masks %s', (input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  it('leaves ordinary text alone', () => {
    const text = 'host 10.0.0.5 refused the connection (ECONNREFUSED) at https://vc.example/sdk';
    expect(redactSecrets(text)).toBe(text);
  });
});
