// The app tiles' pictures: plain outlines drawn with currentColor.
const paths = {
  chat: 'M4 5h16v11H9l-5 4z',
  files: 'M3 6h7l2 2h9v11H3z',
  video: 'M3 7h12v10H3zM15 11l6-4v10l-6-4',
  calendar: 'M4 6h16v14H4zM4 10h16M8 3v5M16 3v5',
};

export function Icon({ name }) {
  return (
    <svg viewBox="0 0 24 24" width="32" height="32" aria-hidden="true" focusable="false"
      fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round">
      <path d={paths[name]} />
    </svg>
  );
}
