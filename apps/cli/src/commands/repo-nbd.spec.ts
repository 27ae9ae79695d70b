import { parseListen } from './repo-nbd';

describe('parseListen', () => {
  it('takes HOST:PORT and [IPv6]:PORT', () => {
    expect(parseListen('127.0.0.1:10809')).toEqual({ host: '127.0.0.1', port: 10809 });
    expect(parseListen('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseListen('[::1]:10809')).toEqual({ host: '::1', port: 10809 });
    expect(parseListen('backup-host:10809')).toEqual({ host: 'backup-host', port: 10809 });
  });

  it.each(['localhost', ':10809', '127.0.0.1:', '127.0.0.1:70000', '::1:10809', '[nope]:1', '1.2.3.4:12a'])('refuses %s', (text) => {
    expect(() => parseListen(text)).toThrow('--listen must be HOST:PORT');
  });
});
