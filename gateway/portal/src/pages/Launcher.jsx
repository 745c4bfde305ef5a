// The launcher: the person's apps, schools and groups, from the ID token's
// claims (`schools` with the `school` scope, docs/oidc.md).
import { t, has } from '../i18n.js';
import { Page, Link } from '../ui.jsx';
import { Icon } from '../icons.jsx';

const APPS = [
  { key: 'app_chat', href: '/chat', icon: 'chat' },
  { key: 'app_files', icon: 'files' },
  { key: 'app_video', icon: 'video' },
  { key: 'app_calendar', icon: 'calendar' },
];

export function roleName(role) {
  return has(`role_${role}`) ? t(`role_${role}`) : role;
}

function kindName(kind) {
  return has(`kind_${kind}`) ? t(`kind_${kind}`) : kind;
}

export function Launcher({ claims }) {
  const name = claims.given_name || claims.name || claims.preferred_username;
  const schools = Array.isArray(claims.schools) ? claims.schools : [];
  return (
    <Page title={t('hello', { name })} wide>
      <section aria-labelledby="apps-title">
        <h2 id="apps-title">{t('your_apps')}</h2>
        <ul class="apps">
          {APPS.map((app) => (
            <li key={app.key}>
              {app.href ? (
                <Link href={app.href} class="app-tile">
                  <span class="app-icon"><Icon name={app.icon} /></span>
                  <span class="app-name">{t(app.key)}</span>
                </Link>
              ) : (
                <div class="app-tile app-tile-off">
                  <span class="app-icon"><Icon name={app.icon} /></span>
                  <span class="app-name">{t(app.key)}</span>
                  <span class="badge">{t('coming_soon')}</span>
                </div>
              )}
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="schools-title">
        <h2 id="schools-title">{t('your_schools')}</h2>
        {schools.length === 0 && <p>{t('no_schools')}</p>}
        <div class="schools">
          {schools.map((s) => <School key={s.school_id} school={s} />)}
        </div>
      </section>
    </Page>
  );
}

function School({ school }) {
  const roles = Array.isArray(school.roles) ? school.roles : [];
  const groups = Array.isArray(school.groups) ? school.groups : [];
  const teaches = roles.includes('teacher');
  const admin = roles.includes('school_admin');
  const headingId = `school-${school.school_id}`;
  return (
    <article class="card school" aria-labelledby={headingId}>
      <h3 id={headingId}>{school.name || school.kennung || school.school_id}</h3>
      <p class="roles">{roles.map(roleName).join(', ')}</p>
      {groups.length === 0 ? <p class="muted">{t('no_groups')}</p> : (
        <ul class="groups">
          {groups.map((g) => (
            <li key={g.group_id}>
              <span class="group-name">{g.name}</span>{' '}
              <span class="muted">{kindName(g.kind)}{g.role === 'leader' ? ` · ${t('leader')}` : ''}</span>
              {teaches && g.role === 'leader' && (
                <>
                  {' '}
                  <Link href={`/class/${encodeURIComponent(school.school_id)}/${encodeURIComponent(g.group_id)}`}
                    class="small-link">{t('manage_class', { group: g.name })}</Link>
                </>
              )}
            </li>
          ))}
        </ul>
      )}
      {admin && (
        <p><Link href={`/admin/${encodeURIComponent(school.school_id)}`} class="button-link">
          {t('school_admin_area', { school: school.name || school.kennung })}</Link></p>
      )}
    </article>
  );
}
