/*
 * kreidectl — the operators' command-line tool.
 *
 *   kreidectl keygen DIR [KID]
 *       Creates an ES256 signing key DIR/KID.pem (KID defaults to the current
 *       date, e.g. k20261122) readable only by its owner. The gateway loads
 *       every key in KREIDE_JWT_KEYS_DIR; the newest signs.
 *
 *   kreidectl token [--sub ID] [--role ROLE]... [--school ID[:ROLE[+ROLE]]]...
 *                   [--scope "A B"] [--ttl SECONDS] [--keys DIR]
 *       Signs a bearer token with the gateway's key (read from --keys or
 *       KREIDE_JWT_KEYS_DIR), for operators who hold the key on a local
 *       install, e.g. `--role operator` to provision schools or
 *       `--role carrier_admin:<carrier id>` for a carrier's admin. Issuer and
 *       audience come from KREIDE_ISSUER / KREIDE_JWT_AUDIENCE as for the
 *       gateway.
 *
 *   kreidectl rpc URL METHOD [JSON] [--role ROLE]... [--user ID] [--no-seal]
 *       Sends one RPC straight to a daemon's socket, like the gateway would,
 *       and prints the reply: for operators debugging a service, and for the
 *       tests showing that a service refuses envelopes that are not sealed
 *       with the internal key (KREIDE_INTERNAL_KEYS). METHOD is
 *       "kreide.identity.Identity/GetSchool"; JSON is the input message.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "identity.pb-c.h"
#include "kr_id.h"
#include "kr_json.h"
#include "kr_jwt.h"
#include "kr_rpc.h"

static int usage(void)
{
    fprintf(stderr, "usage: kreidectl keygen DIR [KID]\n"
                    "       kreidectl token [--sub ID] [--role ROLE]... [--school ID[:ROLE[+ROLE]]]... [--scope S]\n"
                    "                       [--ttl SECONDS] [--keys DIR]\n"
                    "       kreidectl rpc URL METHOD [JSON] [--role ROLE]... [--user ID] [--no-seal]\n");
    return 2;
}

static int keygen(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        return usage();
    char kid[64];
    if (argc == 3) {
        snprintf(kid, sizeof(kid), "%s", argv[2]);
    } else {
        time_t now = time(NULL);
        strftime(kid, sizeof(kid), "k%Y%m%d%H%M%S", gmtime(&now));
    }
    for (const char *p = kid; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
            fprintf(stderr, "kreidectl: a key id may only hold letters, digits, '-' and '_'\n");
            return 1;
        }
    }
    if (mkdir(argv[1], 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kreidectl: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.pem", argv[1], kid);
    char *pem = NULL;
    if (kr_jwt_generate_es256_pem(&pem) != 0) {
        fprintf(stderr, "kreidectl: cannot generate a key\n");
        return 1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "kreidectl: %s: %s\n", path, strerror(errno));
        free(pem);
        return 1;
    }
    size_t len = strlen(pem);
    bool ok = write(fd, pem, len) == (ssize_t)len;
    ok = close(fd) == 0 && ok;
    free(pem);
    if (!ok) {
        fprintf(stderr, "kreidectl: cannot write %s\n", path);
        unlink(path);
        return 1;
    }
    printf("%s\n", kid);
    return 0;
}

static int token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"sub", required_argument, NULL, 's'},
        {"role", required_argument, NULL, 'r'},
        {"school", required_argument, NULL, 'S'},
        {"scope", required_argument, NULL, 'c'},
        {"ttl", required_argument, NULL, 't'},
        {"keys", required_argument, NULL, 'k'},
        {NULL, 0, NULL, 0},
    };
    const char *keys = getenv("KREIDE_JWT_KEYS_DIR"), *scope = NULL;
    const char *issuer = getenv("KREIDE_ISSUER") ? getenv("KREIDE_ISSUER") : "http://127.0.0.1:8080";
    const char *audience = getenv("KREIDE_JWT_AUDIENCE") ? getenv("KREIDE_JWT_AUDIENCE") : "kreide";
    char sub[KR_UUID_STRLEN + 1] = "";
    long ttl = 3600;
    json_t *roles = json_array(), *schools = json_array();
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!kr_uuid_valid(optarg)) {
                fprintf(stderr, "kreidectl: --sub must be a UUID\n");
                return 1;
            }
            snprintf(sub, sizeof(sub), "%s", optarg);
            break;
        case 'r':
            json_array_append_new(roles, json_string(optarg));
            break;
        case 'S': {
            char *colon = strchr(optarg, ':');
            json_t *sr = json_array();
            if (colon != NULL) {
                *colon = '\0';
                char *save = NULL;
                for (char *r = strtok_r(colon + 1, "+", &save); r; r = strtok_r(NULL, "+", &save))
                    json_array_append_new(sr, json_string(r));
            }
            if (!kr_uuid_valid(optarg)) {
                fprintf(stderr, "kreidectl: --school needs a school UUID\n");
                return 1;
            }
            json_array_append_new(schools, json_pack("{s:s, s:o}", "school_id", optarg, "roles", sr));
            break;
        }
        case 'c':
            scope = optarg;
            break;
        case 't':
            ttl = strtol(optarg, NULL, 10);
            if (ttl < 1 || ttl > 86400 * 30) {
                fprintf(stderr, "kreidectl: --ttl must be 1..2592000 seconds\n");
                return 1;
            }
            break;
        case 'k':
            keys = optarg;
            break;
        default:
            return usage();
        }
    }
    if (optind != argc)
        return usage();
    if (keys == NULL) {
        fprintf(stderr, "kreidectl: no key directory (--keys or KREIDE_JWT_KEYS_DIR)\n");
        return 1;
    }
    kr_jwt_keyset *ks = kr_jwt_keyset_new();
    char err[256];
    if (kr_jwt_keyset_load_dir(ks, keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "kreidectl: %s\n", err);
        return 1;
    }
    if (sub[0] == '\0') {
        kr_uuid_str u;
        kr_uuid7_new(&u);
        snprintf(sub, sizeof(sub), "%s", u.s);
    }
    kr_uuid_str jti;
    kr_uuid7_new(&jti);
    json_t *extra = json_pack("{s:o, s:o}", "roles", roles, "schools", schools);
    kr_jwt_claims claims = {
        .iss = (char *)issuer,
        .sub = sub,
        .aud = (char *)audience,
        .jti = jti.s,
        .scope = (char *)scope,
        .exp = (int64_t)time(NULL) + ttl,
        .extra = extra,
    };
    char *tok = NULL;
    int rv = kr_jwt_sign(ks, &claims, &tok);
    json_decref(extra);
    kr_jwt_keyset_free(ks);
    if (rv != KR_JWT_OK) {
        fprintf(stderr, "kreidectl: cannot sign: %s\n", kr_jwt_strerror(rv));
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}

static const ProtobufCServiceDescriptor *const known_services[] = {
    &kreide__health__descriptor,
    &kreide__identity__identity__descriptor,
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

static int rpc(int argc, char **argv)
{
    static const struct option opts[] = {
        {"role", required_argument, NULL, 'r'},
        {"user", required_argument, NULL, 'u'},
        {"no-seal", no_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    char *roles[16];
    size_t nroles = 0;
    const char *user = "";
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
        else
            return usage();
    }
    if (argc - optind < 2 || argc - optind > 3)
        return usage();
    const char *url = argv[optind], *method = argv[optind + 1];
    const char *json = argc - optind == 3 ? argv[optind + 2] : "{}";
    const ProtobufCMethodDescriptor *md = find_method(method);
    if (md == NULL) {
        fprintf(stderr, "kreidectl: unknown method '%s'\n", method);
        return 1;
    }
    kr_json_error jerr;
    ProtobufCMessage *in = kr_json_decode(md->input, json, strlen(json), &jerr);
    if (in == NULL) {
        fprintf(stderr, "kreidectl: %s\n", jerr.message);
        return 1;
    }
    size_t blen = protobuf_c_message_get_packed_size(in);
    uint8_t *body = malloc(blen + 1);
    protobuf_c_message_pack(in, body);
    protobuf_c_message_free_unpacked(in, NULL);

    Kreide__Caller caller = KREIDE__CALLER__INIT;
    caller.kind = KREIDE__CALLER__KIND__USER;
    caller.user_id = (char *)user;
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
            return 1;
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
        return 1;
    }

    nng_socket sock;
    int rv;
    if ((rv = nng_req0_open(&sock)) != 0 || (rv = nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 5000)) != 0 ||
        (rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 5000)) != 0 || (rv = nng_dial(sock, url, NULL, 0)) != 0 ||
        (rv = nng_sendmsg(sock, msg, 0)) != 0 || (rv = nng_recvmsg(sock, &msg, 0)) != 0) {
        fprintf(stderr, "kreidectl: %s: %s\n", url, nng_strerror(rv));
        return 1;
    }
    Kreide__Reply *reply = kreide__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
    nng_msg_free(msg);
    nng_close(sock);
    if (reply == NULL) {
        fprintf(stderr, "kreidectl: the reply does not decode\n");
        return 1;
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
    int code = reply->status == KREIDE__STATUS__OK ? 0 : 3;
    kreide__reply__free_unpacked(reply, NULL);
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "keygen") == 0)
        return keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return token(argc - 1, argv + 1);
    if (strcmp(argv[1], "rpc") == 0)
        return rpc(argc - 1, argv + 1);
    return usage();
}
