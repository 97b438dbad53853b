import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { countRecentCalls, findDevice, listDevices, type StoredDevice } from '../db/devices-repository.ts';
import { toE164 } from '../calls/phone-number.ts';
import { DEVICE_STATUSES, isDeviceSilent } from '../devices/device-status.ts';
import type { AppDeps } from '../http/app-deps.ts';
import { API_SECURITY, AUTH_ERRORS, errorBody, IsoTime, nullable, SERVER_ERRORS, stringEnum, toIsoTime, type App } from '../http/schemas.ts';
import { checkApiAccess } from './api-auth.ts';
import { TENANT_QUERY_SCHEMA } from './webhook-token-routes.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const TAGS = ['devices'];

const DeviceSchema = Type.Object(
  {
    id_session: Type.String(),
    phone: nullable(Type.String({ description: 'E.164' })),
    phone_raw: nullable(Type.String()),
    status: stringEnum(DEVICE_STATUSES),
    status_raw: nullable(Type.String({ description: 'As WaVoIP sent it' })),
    status_changed_at: IsoTime,
    last_status_at: IsoTime,
    last_webhook_at: IsoTime,
    calls_last_24h: Type.Integer(),
    silent: Type.Boolean({ description: 'No webhook for longer than WEBHOOK_SILENCE_WARNING' }),
    tenant: nullable(Type.String()),
  },
  { additionalProperties: false },
);

/** WaVoIP's devices (id_session), as their webhooks describe them. */
export function registerDeviceRoutes(app: App, deps: AppDeps): void {
  const silenceMs = deps.config.webhookSilenceWarningMs;

  function presentDevice(device: StoredDevice, callsLast24h: number, now: number) {
    return {
      id_session: device.deviceId,
      phone: toE164(device.phone),
      phone_raw: device.phone,
      status: device.normalizedStatus,
      status_raw: device.status,
      status_changed_at: toIsoTime(device.statusChangedAt),
      last_status_at: toIsoTime(device.statusAt),
      last_webhook_at: toIsoTime(device.lastSeenAt),
      calls_last_24h: callsLast24h,
      silent: isDeviceSilent(device.lastSeenAt, now, silenceMs),
      tenant: device.tenant,
    };
  }

  void app.register(
    async (api: App) => {
      api.addHook('onRequest', (request, reply) => checkApiAccess(deps, request, reply));

      api.get(
        '/devices',
        {
          schema: {
            summary: "WaVoIP's devices, as their webhooks describe them, by page",
            tags: TAGS,
            security: API_SECURITY,
            querystring: Type.Object(
              {
                tenant: Type.Optional(TENANT_QUERY_SCHEMA),
                status: Type.Optional(stringEnum(DEVICE_STATUSES)),
                silent: Type.Optional(stringEnum(['true', 'false'])),
                limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
                cursor: Type.Optional(Type.String({ maxLength: 512, description: 'next_cursor of the previous page' })),
              },
              { additionalProperties: false },
            ),
            response: {
              200: Type.Object(
                { devices: Type.Array(DeviceSchema), next_cursor: nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last' })) },
                { additionalProperties: false, description: 'A page of devices' },
              ),
              400: errorBody('A filter or the cursor was refused; `field` names it'),
              ...AUTH_ERRORS,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const { tenant, status, silent, limit, cursor } = request.query;
          if (!Number.isSafeInteger(limit)) return reply.code(400).send({ error: 'querystring/limit must be a whole number from 1 to 500', field: 'limit' });
          const after = cursor === undefined ? undefined : decodeCursor(cursor);
          if (after === null) return reply.code(400).send({ error: 'cursor is not one this API returned', field: 'cursor' });
          const now = deps.clock.now();
          const page = await listDevices(deps.db, {
            tenant,
            status,
            silent: silent === undefined ? undefined : silent === 'true',
            silentBefore: now - silenceMs,
            limit,
            after,
          });
          const calls = await countRecentCalls(deps.db, page.devices.map((device) => device.deviceId), now - DAY_MS);
          const last = page.devices.at(-1);
          return {
            devices: page.devices.map((device) => presentDevice(device, calls.get(device.deviceId) ?? 0, now)),
            next_cursor: page.hasMore && last ? Buffer.from(last.deviceId).toString('base64url') : null,
          };
        },
      );

      api.get(
        '/devices/:id',
        {
          schema: {
            summary: 'One device',
            tags: TAGS,
            security: API_SECURITY,
            params: Type.Object({ id: Type.String({ description: 'The id_session' }) }),
            response: {
              200: Type.Object(DeviceSchema.properties, { additionalProperties: false, description: 'The device' }),
              404: errorBody('No device with this id_session'),
              ...AUTH_ERRORS,
              ...SERVER_ERRORS,
            },
          },
        },
        async (request, reply) => {
          const device = await findDevice(deps.db, request.params.id);
          if (device === null) return sendUnknownDevice(reply, request.params.id);
          const now = deps.clock.now();
          const calls = await countRecentCalls(deps.db, [device.deviceId], now - DAY_MS);
          return presentDevice(device, calls.get(device.deviceId) ?? 0, now);
        },
      );
    },
    { prefix: '/api' },
  );
}

function sendUnknownDevice(reply: FastifyReply, deviceId: string) {
  return reply.code(404).send({ error: `no device with id_session ${JSON.stringify(deviceId)}` });
}

/** A device id; one that is not valid text (or holds a NUL, which PostgreSQL refuses) is no cursor of ours. */
function decodeCursor(cursor: string): string | null {
  const deviceId = Buffer.from(cursor, 'base64url').toString('utf8');
  return deviceId === '' || deviceId.includes('\u0000') || deviceId.includes('\uFFFD') ? null : deviceId;
}
