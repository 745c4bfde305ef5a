/*
 * kr_refresh — what the gateway and identity share of refresh token
 * families in Redis (docs/oidc.md, "Refresh tokens"): the keys' names and
 * the rotation itself. Identity's RefreshGrant and the gateway's fast path
 * for the plain case (gateway/oidc_token.c) rotate with the same Lua, so
 * the two cannot drift apart.
 */
#ifndef KR_REFRESH_H
#define KR_REFRESH_H

#define KR_RT_TOKEN_PREFIX "kreide:rt:"   /* + hex SHA-256 of a token: its grant id */
#define KR_RT_FAMILY_PREFIX "kreide:rtf:" /* + grant id: the family's state (a hash) */
#define KR_RT_JTIS_PREFIX "kreide:rtj:"   /* + grant id: "<jti> <exp>" of access tokens issued */
/* Moved by identity after every directory change that can change claims. */
#define KR_CLAIMS_VERSION_KEY "kreide:claims:version"

/* The rotation, a Lua fragment for the end of a script that has set the
 * locals gid (grant id), fk and jk (the family's and its access tokens'
 * keys), now and ttl (numbers, seconds), newkey and newhash (the new
 * token's key and hash), jti and jexp (the new access token). The new token
 * becomes current for ttl seconds; the access token joins the family's
 * list, whose expired entries are dropped on the way. */
#define KR_RT_ROTATE_LUA                                                                                                           \
    "redis.call('SET', newkey, gid, 'EX', ttl) "                                                                                   \
    "redis.call('HSET', fk, 'cur', newhash, 'exp', now + ttl) "                                                                    \
    "redis.call('EXPIRE', fk, ttl) "                                                                                               \
    "while true do "                                                                                                               \
    "  local h = redis.call('LINDEX', jk, 0) "                                                                                     \
    "  if not h or (tonumber(string.match(h, ' (%d+)$')) or 0) > now then break end "                                              \
    "  redis.call('LPOP', jk) "                                                                                                    \
    "end "                                                                                                                         \
    "redis.call('RPUSH', jk, jti .. ' ' .. jexp) "                                                                                 \
    "redis.call('EXPIRE', jk, ttl) "

#endif
