/* rpc: one RPC sent straight to a daemon's socket, as the gateway would send
 * it, sealed with KREIDE_INTERNAL_KEYS or deliberately not. For operators
 * debugging a service and for the envelope security tests. */
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdlib.h>
#include <string.h>

#include "identity.pb-c.h"
#include "messaging.pb-c.h"
#include "kr_id.h"
#include "kr_json.h"
#include "kr_rpc.h"
#include "kreidectl.h"

static int rpc_usage(void)
{
    fprintf(stderr, "usage: kreidectl rpc URL METHOD [JSON] [--role ROLE]... [--user ID] [--service CLIENT_ID] [--no-seal]\n");
    return CTL_EXIT_USAGE;
}

static const ProtobufCServiceDescriptor *const known_services[] = {
    &kreide__health__descriptor,
    &kreide__identity__identity__descriptor,
    &kreide__messaging__messaging__descriptor,
};

static const ProtobufCMethodDescriptor *find_method(const char *full)
{
    const char *slash = strrchr(full, '/');
    if (slash == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(known_services) / sizeof(known_services[0]); i++) {
        const ProtobufCServiceDescriptor *sd = known_services[i];
        if (strlen(sd->name) == (size_t)(slash - full) && memcmp(sd->name, full, (size_t)(slash - full)) == 0)
            return protobuf_c_service_descriptor_get_method_by_name(sd, slash + 1);
    }
    return NULL;
}

int ctl_cmd_rpc(int argc, char **argv)
{
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},
        {"user", required_argument, NULL, 'u'},
        {"no-seal", no_argument, NULL, 'n'},
        {"service", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    char *roles[16];
    size_t nroles = 0;
    const char *user = "";
    const char *service = NULL; /* a SERVICE caller with this client id */
    bool seal = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r' && nroles < 16)
            roles[nroles++] = optarg;
        else if (c == 'u')
            user = optarg;
        else if (c == 'n')
            seal = false;
        else if (c == 's')
            service = optarg;
        else
            return rpc_usage();
    }
    if (argc - optind < 2 || argc - optind > 3)
        return rpc_usage();
    const char *url = argv[optind], *method = argv[optind + 1];
    const char *json = argc - optind == 3 ? argv[optind + 2] : "{}";
    const ProtobufCMethodDescriptor *md = find_method(method);
    if (md == NULL) {
        fprintf(stderr, "kreidectl: unknown method '%s'\n", method);
        return CTL_EXIT_USAGE;
    }
    kr_json_error jerr;
    ProtobufCMessage *in = kr_json_decode(md->input, json, strlen(json), &jerr);
    if (in == NULL) {
        fprintf(stderr, "kreidectl: %s\n", jerr.message);
        return CTL_EXIT_USAGE;
    }
    size_t blen = protobuf_c_message_get_packed_size(in);
    uint8_t *body = malloc(blen + 1);
    protobuf_c_message_pack(in, body);
    protobuf_c_message_free_unpacked(in, NULL);

    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = service != NULL ? KREIDE__CALLER__KIND__SERVICE : KREIDE__CALLER__KIND__USER;
    caller.user_id = (char *)user;
    caller.client_id = service != NULL ? (char *)service : "";
    caller.roles = roles;
    caller.n_roles = nroles;
    kr_uuid_str rid;
    kr_uuid7_new(&rid);
    Kreide__Envelope env = KREIDE__ENVELOPE__INIT;
    env.method = (char *)method;
    env.request_id = rid.s;
    env.deadline_ms = kr_now_ms() + 5000;
    env.caller = &caller;
    env.body.data = body;
    env.body.len = blen;

    nng_msg *msg = NULL;
    char err[256];
    if (seal) {
        kr_keyring *keys = NULL;
        const char *spec = getenv("KREIDE_INTERNAL_KEYS");
        if (kr_keyring_parse(spec, &keys, err, sizeof(err)) != 0) {
            fprintf(stderr, "kreidectl: KREIDE_INTERNAL_KEYS: %s\n", err);
            free(body);
            return CTL_EXIT_USAGE;
        }
        int rv = kr_seal_pack(keys, &env, kr_now_ms(), &msg);
        kr_keyring_free(keys);
        if (rv != 0)
            msg = NULL;
    } else {
        size_t n = kreide__envelope__get_packed_size(&env);
        if (nng_msg_alloc(&msg, n) != 0)
            msg = NULL;
        else
            kreide__envelope__pack(&env, nng_msg_body(msg));
    }
    free(body);
    if (msg == NULL) {
        fprintf(stderr, "kreidectl: cannot build the request\n");
        return CTL_EXIT_USAGE;
    }

    nng_socket sock;
    int rv;
    if ((rv = nng_req0_open(&sock)) != 0 || (rv = nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000)) != 0 ||
        (rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 5000)) != 0 || (rv = nng_dial(sock, url, NULL, 0)) != 0 ||
        (rv = nng_sendmsg(sock, msg, 0)) != 0 || (rv = nng_recvmsg(sock, &msg, 0)) != 0) {
        fprintf(stderr, "kreidectl: %s: %s\n", url, nng_strerror(rv));
        return CTL_EXIT_CONNECT;
    }
    Kreide__Reply *reply = kreide__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    nng_msg_free(msg);
    nng_close(sock);
    if (reply == NULL) {
        fprintf(stderr, "kreidectl: the reply does not decode\n");
        return CTL_EXIT_API;
    }
    const ProtobufCEnumValue *sv = protobuf_c_enum_descriptor_get_value(&kreide__status__descriptor, (int)reply->status);
    json_t *out = json_pack("{s:s, s:s, s:s}", "status", sv ? sv->name : "UNKNOWN", "error_code", reply->error_code, "message",
                            reply->message);
    if (reply->status == KREIDE__STATUS__OK) {
        ProtobufCMessage *o = protobuf_c_message_unpack(md->output, NULL, reply->body.len, reply->body.data);
        if (o != NULL) {
            json_object_set_new(out, "body", kr_json_encode_obj(o));
            protobuf_c_message_free_unpacked(o, NULL);
        }
    }
    char *text = json_dumps(out, JSON_COMPACT);
    printf("%s\n", text);
    free(text);
    json_decref(out);
    int code = reply->status == KREIDE__STATUS__OK ? CTL_EXIT_OK : CTL_EXIT_API;
    kreide__reply__free_unpacked(reply, NULL);
    return code;
}
