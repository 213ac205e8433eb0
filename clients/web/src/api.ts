// The one gRPC-web transport of the app and the service clients on it. The gateway is the
// page's own origin in production (it serves the dashboard); the Vite dev server points at one
// through VITE_PERSYS_GATEWAY (the gateway's --cors-origin list lets it in).
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ApiKeyService } from "./gen/persys/gateway/v1/api_key_pb";
import { AuthService } from "./gen/persys/gateway/v1/auth_pb";
import { UserService } from "./gen/persys/gateway/v1/user_service_pb";
import { AlertService } from "./gen/persys/metrics/v1/alert_service_pb";
import { CommandService } from "./gen/persys/metrics/v1/command_service_pb";
import { DoraService } from "./gen/persys/metrics/v1/dora_service_pb";
import { MetricsQueryService } from "./gen/persys/metrics/v1/query_service_pb";
import { PersonaService } from "./gen/persys/reconciler/v1/persona_service_pb";
import { ProjectService } from "./gen/persys/reconciler/v1/project_service_pb";
import { SchedulerService } from "./gen/persys/scheduler/v1/scheduler_service_pb";
import { accessToken, expire } from "./session";

const gateway = import.meta.env.VITE_PERSYS_GATEWAY as string | undefined;
const baseUrl = gateway || window.location.origin;

/**
 * Whether the refresh token lives in the gateway's HttpOnly cookie: on the gateway's own origin
 * (production, scripts/dev). The Vite dev server on another origin keeps it in memory instead.
 */
export const cookieSessions = !gateway;

/** Metadata of Login, Refresh and Logout calls: asks for a cookie session where there is one. */
export const sessionHeaders: Record<string, string> = cookieSessions ? { "x-persys-session": "cookie" } : {};

// The access token lives in this module's memory only, and goes on every call here.
const auth: Interceptor = (next) => async (req) => {
  const token = accessToken();
  if (token && !req.header.has("authorization")) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    const e = ConnectError.from(err);
    // A unary call refused for the session (expired, revoked): back to the login page.
    if (e.code === Code.Unauthenticated && token && !req.stream) expire("Your session ended. Log in again.");
    throw err;
  }
};

const transport = createGrpcWebTransport({ baseUrl, interceptors: [auth] });

/** AuthService: Login, Refresh, Logout, WhoAmI. */
export const authClient = createClient(AuthService, transport);
/** SchedulerService: nodes, workloads, logs. */
export const scheduler = createClient(SchedulerService, transport);
/** PersonaService (the reconciler, behind the gateway as upstream `reconciler`): personas. */
export const personaService = createClient(PersonaService, transport);
/** ProjectService (the reconciler, with Kapsa projects on): projects, environments, builds. */
export const projectService = createClient(ProjectService, transport);
/** MetricsQueryService (the metrics pipeline, upstream `metrics`): ranges, live host metrics. */
export const metricsQuery = createClient(MetricsQueryService, transport);
/** AlertService (the metrics pipeline): alerts and alert rules. */
export const alertService = createClient(AlertService, transport);
/** CommandService (the metrics pipeline; admins): commands on a node and their history. */
export const commandService = createClient(CommandService, transport);
/** DoraService (the metrics pipeline): deployments and the four keys. */
export const doraService = createClient(DoraService, transport);
/** UserService (the gateway; admins): users and the audit log. */
export const userService = createClient(UserService, transport);
/** ApiKeyService (the gateway): the caller's API keys (admins: every key). */
export const apiKeyService = createClient(ApiKeyService, transport);
