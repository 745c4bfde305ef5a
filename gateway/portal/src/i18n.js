// German and English texts. The language is the device's (navigator
// languages: German for de-*, English for en-*, else German, like the
// sign-in pages), or the one chosen in the portal, kept on the device.
import { signal } from './signal.js';

const LANG_KEY = 'kreide.lang';

const de = {
  app_name: 'Kreide',
  tagline: 'Chat, Dateien und Video für Schule und Kita',
  language: 'Sprache',
  lang_de: 'Deutsch',
  lang_en: 'English',
  skip_to_content: 'Zum Inhalt springen',
  loading: 'Wird geladen …',
  back: 'Zurück',
  close: 'Schließen',
  print: 'Drucken',
  done: 'Fertig',
  retry: 'Nochmal versuchen',

  // sign-in start
  signin_title: 'Willkommen bei Kreide',
  signin_lead: 'Melde dich mit deinem Benutzernamen und Passwort an.',
  signin_button: 'Anmelden',
  signin_first_time: 'Zum ersten Mal hier?',
  signin_first_time_link: 'Mit Code ein Passwort wählen',
  signin_forgot_link: 'Passwort vergessen?',
  signin_as: 'Anmelden als {name}',
  signin_other: 'Mit einem anderen Konto anmelden',
  signin_again: 'Deine Sitzung ist abgelaufen. Bitte melde dich wieder an.',
  signin_known_accounts: 'Konten auf diesem Gerät',
  signin_in_progress: 'Anmeldung läuft …',
  not_configured: 'Die Anmeldung ist auf diesem Server noch nicht eingerichtet. Bitte wende dich an die Person, die Kreide betreut.',
  callback_title: 'Anmeldung wird abgeschlossen …',
  callback_failed: 'Die Anmeldung hat nicht geklappt.',
  callback_denied: 'Die Anmeldung wurde abgebrochen.',
  callback_stale: 'Diese Anmeldung ist veraltet oder wurde in einem anderen Fenster begonnen. Bitte starte sie neu.',
  to_start: 'Zur Startseite',

  // launcher
  hello: 'Hallo, {name}!',
  your_apps: 'Deine Apps',
  your_schools: 'Deine Schulen und Gruppen',
  no_schools: 'Du gehörst noch zu keiner Schule.',
  app_chat: 'Chat',
  app_files: 'Dateien',
  app_video: 'Video',
  app_calendar: 'Kalender',
  coming_soon: 'kommt bald',
  groups: 'Gruppen',
  no_groups: 'Keine Gruppen',
  leader: 'leitet',
  manage_class: 'Reset-Codes für {group}',
  school_admin_area: 'Verwaltung von {school}',

  // roles and kinds
  role_pupil: 'Schüler*in',
  role_teacher: 'Lehrkraft',
  role_parent: 'Elternteil',
  role_staff: 'Mitarbeiter*in',
  role_head: 'Schulleitung',
  role_school_admin: 'Schul-Admin',
  kind_class: 'Klasse',
  kind_course: 'Kurs',
  kind_club: 'AG',
  kind_staff: 'Kollegium',
  kind_parents: 'Eltern',
  CLASS: 'Klasse',
  COURSE: 'Kurs',
  CLUB: 'AG',
  STAFF_ROOM: 'Kollegium',
  PARENTS: 'Eltern',
  PUPIL: 'Schüler*in',
  TEACHER: 'Lehrkraft',
  PARENT: 'Elternteil',
  STAFF: 'Mitarbeiter*in',
  HEAD: 'Schulleitung',
  SCHOOL_ADMIN: 'Schul-Admin',

  // accounts
  accounts: 'Konten',
  accounts_title: 'Konten auf diesem Gerät',
  accounts_lead: 'Geschwister können sich ein Gerät teilen: Jedes Konto sieht nur seine eigenen Daten.',
  account_active: 'angemeldet',
  account_switch: 'Zu {name} wechseln',
  account_add: 'Konto hinzufügen',
  account_signout: '{name} abmelden',
  account_signout_done: '{name} ist abgemeldet.',
  account_mismatch: 'Auf diesem Gerät ist gerade ein anderes Konto angemeldet. Bitte melde dich als {name} an.',

  // enrollment
  enroll_title: 'Passwort wählen',
  enroll_lead: 'Gib deinen Benutzernamen und den Code ein, den du von der Schule bekommen hast, und wähle ein Passwort.',
  username: 'Benutzername',
  code: 'Code',
  code_hint: 'Zum Beispiel K7MR-3XWC-HTEA. Groß- und Kleinschreibung ist egal.',
  new_password: 'Neues Passwort',
  repeat_password: 'Passwort wiederholen',
  password_rules_title: 'So wird dein Passwort gut:',
  password_rule_length: 'mindestens 8 Zeichen, gern viel mehr',
  password_rule_sentence: 'ein kleiner Satz ist gut zu merken: „mein pferd heisst blitz“',
  password_rule_personal: 'nicht dein Name oder Benutzername',
  password_rule_common: 'keine bekannten Wörter wie „passwort“ oder „123456“',
  enroll_submit: 'Passwort speichern',
  enroll_success: 'Geschafft! Dein Passwort ist gespeichert.',
  enroll_signin_now: 'Jetzt anmelden',
  err_required: 'Bitte ausfüllen.',
  err_mismatch: 'Die beiden Passwörter sind nicht gleich.',
  err_network: 'Der Server ist gerade nicht erreichbar. Bitte versuche es gleich noch einmal.',
  err_generic: 'Das hat nicht geklappt: {message}',
  'identity.code_invalid': 'Benutzername oder Code stimmen nicht.',
  'identity.code_expired': 'Dieser Code ist abgelaufen. Bitte frag nach einem neuen.',
  'identity.code_used': 'Dieser Code wurde schon benutzt. Bitte frag nach einem neuen.',
  'identity.code_wrong_purpose': 'Du hast schon ein Passwort. Bitte frag nach einem Reset-Code.',
  'identity.throttled': 'Zu viele Versuche. Bitte warte kurz und versuche es dann noch einmal.',
  'password.too_short': 'Das Passwort ist zu kurz: mindestens 8 Zeichen.',
  'password.too_long': 'Das Passwort ist zu lang: höchstens 128 Zeichen.',
  'password.invalid_chars': 'Das Passwort enthält Zeichen, die nicht gehen.',
  'password.repeated': 'Das Passwort wiederholt nur dieselben Zeichen.',
  'password.sequence': 'Das Passwort ist eine Tastenfolge wie „12345678“ oder „qwertz“.',
  'password.personal': 'Das Passwort enthält deinen Namen oder Benutzernamen.',
  'password.common': 'Dieses Passwort ist zu bekannt. Wie wäre es mit einem kleinen Satz?',

  // forgot password
  forgot_title: 'Passwort vergessen?',
  forgot_lead: 'Kein Problem. Du bekommst einen Reset-Code und wählst damit ein neues Passwort.',
  forgot_pupil: 'Schüler*innen fragen ihre Klassenlehrerin oder ihren Klassenlehrer.',
  forgot_parent: 'Eltern fragen das Sekretariat oder die Schul-Admins ihrer Schule oder Kita.',
  forgot_teacher: 'Lehrkräfte und Mitarbeitende fragen die Schul-Admins ihrer Schule.',
  forgot_admin: 'Schul-Admins fragen ihren Schulträger.',
  forgot_then: 'Mit dem Code wählst du hier ein neues Passwort:',
  forgot_use_code: 'Code einlösen',
  forgot_no_email: 'Kreide braucht keine E-Mail-Adresse, darum gibt es keinen Link per Mail.',

  // teacher: reset codes
  class_title: 'Reset-Codes: {group}',
  class_lead: 'Hat jemand aus der Gruppe das Passwort vergessen? Erstelle einen Reset-Code und lies ihn vor oder drucke ihn aus. Er gilt einmal und läuft ab.',
  members: 'Mitglieder',
  no_members: 'Keine Mitglieder',
  issue_reset: 'Reset-Code für {name}',
  issue_enrollment: 'Anmeldecode für {name}',
  code_for: 'Code für {name}',
  code_user: 'Benutzername: {username}',
  code_expires: 'Gültig bis {when}. Der Code funktioniert nur einmal.',
  code_where: 'Einlösen unter {url}',
  code_new_replaces: 'Ein neuer Code ersetzt einen älteren.',
  forbidden: 'Das darfst du nicht.',
  not_found: 'Nicht gefunden.',

  // admin
  admin_title: 'Verwaltung: {school}',
  admin_people: 'Personen',
  admin_groups: 'Gruppen',
  admin_rules: 'Chat-Regeln',
  search_people: 'Personen suchen',
  search_hint: 'Anfang von Vorname, Nachname oder Benutzername',
  search: 'Suchen',
  no_people: 'Niemand gefunden.',
  more: 'Mehr laden',
  roles: 'Rollen',
  school_year: 'Schuljahr',
  show_members: 'Mitglieder von {group}',


  page_not_found: 'Diese Seite gibt es nicht.',
  signed_in_as: 'Angemeldet als {name}',
};

const en = {
  app_name: 'Kreide',
  tagline: 'Chat, files and video for schools and Kitas',
  language: 'Language',
  lang_de: 'Deutsch',
  lang_en: 'English',
  skip_to_content: 'Skip to content',
  loading: 'Loading …',
  back: 'Back',
  close: 'Close',
  print: 'Print',
  done: 'Done',
  retry: 'Try again',

  signin_title: 'Welcome to Kreide',
  signin_lead: 'Sign in with your user name and password.',
  signin_button: 'Sign in',
  signin_first_time: 'First time here?',
  signin_first_time_link: 'Choose a password with a code',
  signin_forgot_link: 'Forgot your password?',
  signin_as: 'Sign in as {name}',
  signin_other: 'Sign in with another account',
  signin_again: 'Your session has ended. Please sign in again.',
  signin_known_accounts: 'Accounts on this device',
  signin_in_progress: 'Signing in …',
  not_configured: 'Sign-in is not set up on this server yet. Please contact whoever looks after Kreide.',
  callback_title: 'Finishing sign-in …',
  callback_failed: 'Sign-in did not work.',
  callback_denied: 'Sign-in was cancelled.',
  callback_stale: 'This sign-in is out of date or was started in another window. Please start again.',
  to_start: 'To the start page',

  hello: 'Hello, {name}!',
  your_apps: 'Your apps',
  your_schools: 'Your schools and groups',
  no_schools: 'You do not belong to a school yet.',
  app_chat: 'Chat',
  app_files: 'Files',
  app_video: 'Video',
  app_calendar: 'Calendar',
  coming_soon: 'coming soon',
  groups: 'Groups',
  no_groups: 'No groups',
  leader: 'leads',
  manage_class: 'Reset codes for {group}',
  school_admin_area: 'Manage {school}',

  role_pupil: 'Pupil',
  role_teacher: 'Teacher',
  role_parent: 'Parent',
  role_staff: 'Staff',
  role_head: 'Head',
  role_school_admin: 'School admin',
  kind_class: 'Class',
  kind_course: 'Course',
  kind_club: 'Club',
  kind_staff: 'Staff room',
  kind_parents: 'Parents',
  CLASS: 'Class',
  COURSE: 'Course',
  CLUB: 'Club',
  STAFF_ROOM: 'Staff room',
  PARENTS: 'Parents',
  PUPIL: 'Pupil',
  TEACHER: 'Teacher',
  PARENT: 'Parent',
  STAFF: 'Staff',
  HEAD: 'Head',
  SCHOOL_ADMIN: 'School admin',

  accounts: 'Accounts',
  accounts_title: 'Accounts on this device',
  accounts_lead: 'Siblings can share a device: each account sees only its own data.',
  account_active: 'signed in',
  account_switch: 'Switch to {name}',
  account_add: 'Add account',
  account_signout: 'Sign out {name}',
  account_signout_done: '{name} is signed out.',
  account_mismatch: 'Another account is signed in on this device right now. Please sign in as {name}.',

  enroll_title: 'Choose a password',
  enroll_lead: 'Enter your user name and the code you got from your school, then choose a password.',
  username: 'User name',
  code: 'Code',
  code_hint: 'For example K7MR-3XWC-HTEA. Upper or lower case does not matter.',
  new_password: 'New password',
  repeat_password: 'Repeat the password',
  password_rules_title: 'What makes a good password:',
  password_rule_length: 'at least 8 characters, more is better',
  password_rule_sentence: 'a short sentence is easy to remember: “my horse is called lightning”',
  password_rule_personal: 'not your name or user name',
  password_rule_common: 'no well-known words such as “password” or “123456”',
  enroll_submit: 'Save password',
  enroll_success: 'Done! Your password is saved.',
  enroll_signin_now: 'Sign in now',
  err_required: 'Please fill this in.',
  err_mismatch: 'The two passwords are not the same.',
  err_network: 'The server cannot be reached right now. Please try again in a moment.',
  err_generic: 'That did not work: {message}',
  'identity.code_invalid': 'The user name or the code is not right.',
  'identity.code_expired': 'This code has expired. Please ask for a new one.',
  'identity.code_used': 'This code was used already. Please ask for a new one.',
  'identity.code_wrong_purpose': 'You already have a password. Please ask for a reset code.',
  'identity.throttled': 'Too many attempts. Please wait a little and try again.',
  'password.too_short': 'The password is too short: at least 8 characters.',
  'password.too_long': 'The password is too long: at most 128 characters.',
  'password.invalid_chars': 'The password contains characters that cannot be used.',
  'password.repeated': 'The password only repeats the same characters.',
  'password.sequence': 'The password is a keyboard sequence such as “12345678” or “qwerty”.',
  'password.personal': 'The password contains your name or user name.',
  'password.common': 'This password is too well known. How about a short sentence?',

  forgot_title: 'Forgot your password?',
  forgot_lead: 'No problem. You get a reset code and choose a new password with it.',
  forgot_pupil: 'Pupils ask their class teacher.',
  forgot_parent: 'Parents ask the office or the school admins of their school or Kita.',
  forgot_teacher: 'Teachers and staff ask the school admins of their school.',
  forgot_admin: 'School admins ask their school carrier.',
  forgot_then: 'With the code you choose a new password here:',
  forgot_use_code: 'Use a code',
  forgot_no_email: 'Kreide needs no e-mail address, so there is no link by e-mail.',

  class_title: 'Reset codes: {group}',
  class_lead: 'Has someone in the group forgotten their password? Make a reset code and read it out or print it. It works once and expires.',
  members: 'Members',
  no_members: 'No members',
  issue_reset: 'Reset code for {name}',
  issue_enrollment: 'Enrollment code for {name}',
  code_for: 'Code for {name}',
  code_user: 'User name: {username}',
  code_expires: 'Valid until {when}. The code works only once.',
  code_where: 'Use it at {url}',
  code_new_replaces: 'A new code replaces an older one.',
  forbidden: 'You may not do that.',
  not_found: 'Not found.',

  admin_title: 'Manage: {school}',
  admin_people: 'People',
  admin_groups: 'Groups',
  admin_rules: 'Chat rules',
  search_people: 'Search people',
  search_hint: 'Start of the given name, family name or user name',
  search: 'Search',
  no_people: 'Nobody found.',
  more: 'Load more',
  roles: 'Roles',
  school_year: 'School year',
  show_members: 'Members of {group}',


  page_not_found: 'This page does not exist.',
  signed_in_as: 'Signed in as {name}',
};

const texts = { de, en };

function deviceLanguage() {
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
  for (const l of langs) {
    const p = String(l).toLowerCase().slice(0, 2);
    if (p === 'de' || p === 'en') return p;
  }
  return 'de';
}

function stored() {
  try {
    const v = localStorage.getItem(LANG_KEY);
    return v === 'de' || v === 'en' ? v : null;
  } catch {
    return null;
  }
}

export const lang = signal(stored() || deviceLanguage());

export function setLang(l) {
  if (!texts[l]) return;
  try { localStorage.setItem(LANG_KEY, l); } catch { /* private mode: this page only */ }
  document.documentElement.lang = l;
  lang.set(l);
}

// The text for `key` in the current language, with {name} placeholders
// filled from `vars`. An unknown key shows as itself (visible in tests).
export function t(key, vars) {
  const s = texts[lang.get()][key] ?? texts.de[key] ?? key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}

// Parts of the app that load later (the chat, the admin area's rules)
// bring their own texts and add them here when they load.
export function addTexts(more) {
  for (const l of Object.keys(texts)) Object.assign(texts[l], more[l]);
}

export function has(key) {
  return key in texts[lang.get()];
}

export function formatDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(lang.get() === 'de' ? 'de-DE' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}
