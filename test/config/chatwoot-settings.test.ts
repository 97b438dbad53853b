import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.ts';
import { configError } from '../support/config-error.ts';


describe('Chatwoot settings', () => {
  const CHATWOOT = { CHATWOOT_URL: 'https://chat.example.com/', CHATWOOT_API_TOKEN: 'aBcD1234efGh5678', CHATWOOT_ACCOUNT_ID: '7', CHATWOOT_INBOX_ID: '3' };

  it('is off when none of the four is set, and reads all of them with their defaults', () => {
    expect(loadConfig({}).chatwoot).toBeNull();
    expect(loadConfig(CHATWOOT).chatwoot).toEqual({
      url: 'https://chat.example.com',
      token: 'aBcD1234efGh5678',
      accountId: 7,
      inboxId: 3,
      inboxByDevice: new Map(),
      messageMode: 'private',
      language: 'en',
    });
  });

  it('reads the device → inbox map, the message mode and the language', () => {
    const config = loadConfig({ ...CHATWOOT, CHATWOOT_INBOX_BY_DEVICE: ' 8758847:3, 8758848:4 ', CHATWOOT_MESSAGE_MODE: 'api', CHATWOOT_LANGUAGE: 'pt-BR' });
    expect(config.chatwoot).toMatchObject({ inboxByDevice: new Map([['8758847', 3], ['8758848', 4]]), messageMode: 'api', language: 'pt-BR' });
  });

  it('names every one of the four that is missing when only some are set', () => {
    const message = configError({ CHATWOOT_URL: CHATWOOT.CHATWOOT_URL, CHATWOOT_INBOX_ID: '3' }).message;
    expect(message).toMatch(/CHATWOOT_API_TOKEN: must be set too/);
    expect(message).toMatch(/CHATWOOT_ACCOUNT_ID: must be set too/);
    expect(message).not.toMatch(/CHATWOOT_URL:|CHATWOOT_INBOX_ID:/);
  });

  it.each([
    ['CHATWOOT_URL', 'chat.example.com'],
    ['CHATWOOT_URL', 'https://user:pass@chat.example.com'],
    ['CHATWOOT_ACCOUNT_ID', 'seven'],
    ['CHATWOOT_INBOX_ID', '0'],
    ['CHATWOOT_API_TOKEN', 'has a space'],
    ['CHATWOOT_INBOX_BY_DEVICE', '8758847=3'],
    ['CHATWOOT_INBOX_BY_DEVICE', '1:3,1:4'],
    ['CHATWOOT_MESSAGE_MODE', 'public'],
    ['CHATWOOT_LANGUAGE', 'pt'],
  ])('refuses %s=%s, naming it and never quoting the token', (variable, value) => {
    const message = configError({ ...CHATWOOT, [variable]: value }).message;
    expect(message).toMatch(new RegExp(`${variable}: `));
    expect(message).not.toContain(CHATWOOT.CHATWOOT_API_TOKEN);
    if (variable === 'CHATWOOT_API_TOKEN') expect(message).not.toContain(value);
  });
});
