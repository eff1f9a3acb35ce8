/** Typed calls for /nbops/api/schedules and /nbops/api/runs/<id>/lineage (through request.ts). */
import type {
  CreateSchedule,
  Lineage,
  RunDetail,
  ScheduleHistory,
  ScheduleInfo,
  ScheduleList,
  ScheduleRemoved,
  ScheduleRunAccepted
} from '../api.generated';
import { requestAPI } from '../request';

const one = (name: string): string => `schedules/${encodeURIComponent(name)}`;

export const scheduleApi = {
  list: (): Promise<ScheduleList> => requestAPI('schedules'),

  create: (body: CreateSchedule): Promise<ScheduleInfo> =>
    requestAPI('schedules', { method: 'POST', body }),

  remove: (name: string): Promise<ScheduleRemoved> => requestAPI(one(name), { method: 'DELETE' }),

  runNow: (name: string): Promise<ScheduleRunAccepted> =>
    requestAPI(`${one(name)}/run`, { method: 'POST', body: {} }),

  history: (name: string, limit = 20): Promise<ScheduleHistory> =>
    requestAPI(`${one(name)}/history`, { query: { limit } }),

  lineage: (runId: string): Promise<Lineage> =>
    requestAPI(`runs/${encodeURIComponent(runId)}/lineage`),

  run: (runId: string): Promise<RunDetail> => requestAPI(`runs/${encodeURIComponent(runId)}`)
};
