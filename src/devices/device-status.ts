/**
 * What a device's WaVoIP status means, in the words a person asks about a device. Pure: no I/O.
 * WaVoIP's DEVICE event sends `BUILDING | open | close | connecting | no_status | error |
 * restarting | hibernating | WAITING_PAYMENT`, and has announced `connected`/`disconnected` in
 * place of `open`/`close`: both are read, in any case. Anything else is `unknown` (the raw
 * value is kept beside it).
 */
export const DEVICE_STATUSES = [
  'connected',
  'disconnected',
  'connecting',
  'building',
  'restarting',
  'error',
  'payment_required',
  'hibernating',
  'unknown',
] as const;

export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

const BY_RAW_STATUS: Record<string, DeviceStatus> = {
  open: 'connected',
  connected: 'connected',
  close: 'disconnected',
  closed: 'disconnected',
  disconnected: 'disconnected',
  connecting: 'connecting',
  building: 'building',
  restarting: 'restarting',
  error: 'error',
  waiting_payment: 'payment_required',
  hibernating: 'hibernating',
};

export function normalizeDeviceStatus(raw: string | null): DeviceStatus {
  if (raw === null) return 'unknown';
  return BY_RAW_STATUS[raw.trim().toLowerCase()] ?? 'unknown';
}

/** A device is silent once it has sent webhooks and then nothing for the warning's threshold. */
export function isDeviceSilent(lastWebhookAt: number, now: number, thresholdMs: number): boolean {
  return now - lastWebhookAt >= thresholdMs;
}
