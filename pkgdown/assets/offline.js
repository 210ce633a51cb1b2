/* bootstrap-toc for pkgdown's Bootstrap 5 pages.
 *
 * pkgdown's template loads bootstrap-toc 1.0.1 from a CDN that serves it from
 * the project's GitHub tag. It is not on npm (its package.json says
 * "private": true) nor in any Debian or R package, so the site uses the copy
 * that Debian's pkgdown ships for its Bootstrap 3 pages, 0.4.1, which differs
 * from 1.0.1 in the markup it writes and in the ids it makes for headings
 * without one (pkgdown's headings all have one). This file changes the
 * markup: 0.4.1 writes Bootstrap 3 lists (<ul class="nav"><li><a>), while
 * pkgdown's styles (`#toc > .nav a.nav-link`, `a.active + .nav` for the open
 * sub-list) and Bootstrap 5's scrollspy look for .nav-link anchors in a .nav.
 *
 * headroom.js, Fuse, autocomplete.js and mark.js, which this file used to
 * stand in for, come from npm (pkgdown/package.json; see head.html).
 */
(function($) {
  'use strict';

  if (!window.Toc) return;
  $.extend(window.Toc.helpers, {
    createNavList: function() {
      return $('<nav class="nav nav-pills flex-column"></nav>');
    },
    // The top list goes into the <nav id="toc">; a sub-list goes right
    // after the link of its parent heading.
    createChildNavList: function($parent) {
      var $childList = this.createNavList();
      if ($parent.is('a')) {
        $parent.after($childList);
      } else {
        $parent.append($childList);
      }
      return $childList;
    },
    generateNavEl: function(anchor, text) {
      var $a = $('<a class="nav-link"></a>');
      $a.attr('href', '#' + anchor);
      $a.text(text);
      return $a;
    }
  });
})(window.jQuery);
