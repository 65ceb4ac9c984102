/**
 * Egress for jobs with `network: internet`: the per-job gateway (gateway.ts) the sandbox's
 * forwarder (forwarder.ts) relays to, the rules it applies (policy.ts) and the address classifier
 * behind them (address.ts, ranges.ts). The executor owns it; the record is in the protocol.
 */
export { parseHost, formatIp, toIp, type IpAddress, type ParsedHost } from "./address.ts";
export type { Resolver } from "./dial.ts";
export { ensureForwarder } from "./forwarder.ts";
export { defaultResolver, EgressGateway, type EgressGatewayOptions } from "./gateway.ts";
export { buildPolicy, parseEgressRule, type EgressPolicy, type EgressRule, type EgressTarget, type EgressVerdict, type PolicyOptions } from "./policy.ts";
export { classify, describeClassification, embeddedIPv4, SPECIAL_RANGES, type Classification } from "./ranges.ts";
