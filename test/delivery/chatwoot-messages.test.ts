import { describe, expect, it } from 'vitest';
import type { AttachmentState } from '../../src/calls/call-state.ts';
import {
  callSummaryText,
  formatClock,
  recordingCaption,
  recordingExtension,
  recordingFailedText,
  recordingFileName,
  recordingStateText,
  type CallSummaryFacts,
} from '../../src/delivery/chatwoot-messages.ts';

const STARTED = Date.UTC(2026, 11, 3, 4, 51, 29);
const ANSWERED: CallSummaryFacts = {
  direction: 'incoming',
  peerPhone: '+5511987654321',
  peerName: null,
  durationSeconds: 69,
  outcome: 'answered',
  startedAt: STARTED,
  attachment: 'pending',
};

describe('the call summary', () => {
  it.each([
    [
      'en',
      ANSWERED,
      '📞 Incoming WhatsApp call — answered\nFrom: +5511987654321\nDuration: 01:09\nStarted: 2026-12-03 04:51:29 UTC\nRecording: on its way',
    ],
    [
      'pt-BR',
      ANSWERED,
      '📞 Chamada de WhatsApp recebida — atendida\nDe: +5511987654321\nDuração: 01:09\nInício: 03/12/2026 04:51:29 UTC\nGravação: a caminho',
    ],
    [
      'en',
      { ...ANSWERED, direction: 'outgoing', peerName: 'Maria', outcome: 'rejected', durationSeconds: 0, attachment: 'none' },
      '📞 Outgoing WhatsApp call — rejected\nTo: Maria (+5511987654321)\nDuration: 00:00\nStarted: 2026-12-03 04:51:29 UTC\nNo recording: the call was not answered on this device',
    ],
    [
      'pt-BR',
      { ...ANSWERED, direction: 'outgoing', peerName: 'Maria', outcome: 'missed', durationSeconds: null, attachment: 'none' },
      '📞 Chamada de WhatsApp feita — perdida\nPara: Maria (+5511987654321)\nDuração: desconhecida\nInício: 03/12/2026 04:51:29 UTC\nSem gravação: a chamada não foi atendida neste dispositivo',
    ],
    [
      'en',
      { ...ANSWERED, direction: null, peerPhone: null, outcome: 'failed', attachment: 'disabled' },
      '📞 WhatsApp call — failed\nNumber: ?\nDuration: 01:09\nStarted: 2026-12-03 04:51:29 UTC\nNo recording: recording is off on the device',
    ],
  ] as const)('in %s: %j', (language, facts, text) => {
    expect(callSummaryText(facts, language)).toBe(text);
  });

  it.each<[AttachmentState, string, string]>([
    ['pending', 'Recording: on its way', 'Gravação: a caminho'],
    ['attached', 'Recording: attached below', 'Gravação: anexada abaixo'],
    ['disabled', 'No recording: recording is off on the device', 'Sem gravação: a gravação está desligada no dispositivo'],
    ['empty', 'No recording: the call was too short to record', 'Sem gravação: a chamada foi curta demais para gravar'],
    ['none', 'No recording: the call was not answered on this device', 'Sem gravação: a chamada não foi atendida neste dispositivo'],
    ['failed', 'No recording: it could not be fetched (details below)', 'Sem gravação: não foi possível obtê-la (detalhes abaixo)'],
    ['expired', 'No recording: deleted after the retention period', 'Sem gravação: apagada após o período de retenção'],
  ])('says of a recording %s: "%s" / "%s"', (state, en, ptBr) => {
    expect(recordingStateText(state, 'en')).toBe(en);
    expect(recordingStateText(state, 'pt-BR')).toBe(ptBr);
    expect(callSummaryText({ ...ANSWERED, attachment: state }, 'en').split('\n').at(-1)).toBe(en);
  });
});

describe('the recording and failure messages', () => {
  it('captions the audio with the other party and the length', () => {
    expect(recordingCaption({ peerPhone: '+5511987654321', durationSeconds: 9.4 }, 'en')).toBe('🎙️ Recording of the call with +5511987654321 (00:09)');
    expect(recordingCaption({ peerPhone: '+5511987654321', durationSeconds: null }, 'pt-BR')).toBe('🎙️ Gravação da chamada com +5511987654321 (desconhecida)');
  });

  it.each([
    [
      'en',
      'https://rec.example.com',
      '⚠️ The recording of this call could not be fetched: HTTP 403\nTo try again: POST https://rec.example.com/api/calls/ABC123/retry (with the API token), or on the server: npx wavoip-recordings retry ABC123',
    ],
    ['en', undefined, '⚠️ The recording of this call could not be fetched: HTTP 403\nTo try again: on the server: npx wavoip-recordings retry ABC123'],
    [
      'pt-BR',
      'https://rec.example.com',
      '⚠️ Não foi possível obter a gravação desta chamada: HTTP 403\nPara tentar de novo: POST https://rec.example.com/api/calls/ABC123/retry (com o token da API), ou no servidor: npx wavoip-recordings retry ABC123',
    ],
  ] as const)('tells a failure in %s with the retry link (PUBLIC_URL %s)', (language, publicUrl, text) => {
    expect(recordingFailedText({ callId: 'ABC123', reason: 'HTTP 403', publicUrl }, language)).toBe(text);
  });

  it('quotes a call id for the shell and the URL when it needs it', () => {
    const text = recordingFailedText({ callId: "a b'c", reason: 'x', publicUrl: 'https://r.example' }, 'en');
    expect(text).toContain('https://r.example/api/calls/a%20b\'c/retry');
    expect(text).toContain(`npx wavoip-recordings retry 'a b'\\''c'`);
  });

  it('names the file by time and number', () => {
    expect(recordingFileName({ startedAt: STARTED, peerPhone: '+5511987654321' }, 'ogg')).toBe('call-20261203-045129-5511987654321.ogg');
    expect(recordingFileName({ startedAt: STARTED, peerPhone: null }, 'mp3')).toBe('call-20261203-045129-unknown.mp3');
  });

  it.each([
    ['audio/ogg', 'opus', 'ogg'],
    ['audio/mpeg', 'mp3', 'mp3'],
    ['audio/mp4', 'mp4', 'm4a'],
    ['audio/x-musepack', 'mpc', 'mpc'],
  ])('names a %s stored as .%s with .%s', (mediaType, stored, extension) => {
    expect(recordingExtension(mediaType, stored)).toBe(extension);
  });

  it.each([
    [0, '00:00'],
    [9, '00:09'],
    [59.6, '01:00'],
    [4_502, '75:02'],
    [-3, '00:00'],
  ])('formats %s seconds as %s', (seconds, text) => {
    expect(formatClock(seconds)).toBe(text);
  });
});
