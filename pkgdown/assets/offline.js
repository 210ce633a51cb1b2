/* kerasswa's documentation site works offline. pkgdown's pkgdown.js calls five
 * libraries that its template loads from CDNs. Two come as local files (see
 * pkgdown/templates/head.html); for the other three, which no Debian or R
 * package ships, this file gives the small part of their API that pkgdown.js
 * uses:
 *   - bootstrap-toc: pkgdown's local copy (0.4.1) writes Bootstrap 3 markup;
 *     the helpers below write the Bootstrap 5 markup of 1.0.1 instead, which
 *     pkgdown's styles and Bootstrap's scrollspy expect.
 *   - headroom.js (hide the navbar on scroll): the navbar stays put.
 *   - Fuse + autocomplete.js (the search box) and mark.js (highlighting the
 *     searched words on the page found): a plain word search over pkgdown's
 *     search.json, shown in autocomplete.js's markup, which pkgdown styles.
 */
(function($) {
  'use strict';

  /* bootstrap-toc, Bootstrap 5 markup ------------------------------------ */
  if (window.Toc) {
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
  }

  /* headroom.js ---------------------------------------------------------- */
  $.fn.headroom = function() { return this; };

  /* Fuse: every word of the query must occur in the entry ----------------- */
  function Fuse(entries, options) {
    this.entries = entries;
    this.keys = (options && options.keys) || ['what', 'text', 'code'];
  }
  Fuse.prototype.search = function(query, options) {
    var words = query.toLowerCase().split(/\s+/).filter(Boolean);
    var keys = this.keys;
    var results = [];
    this.entries.forEach(function(entry, index) {
      var fields = keys.map(function(key) {
        return String(entry[key] || '').toLowerCase();
      });
      var score = 0;
      for (var w = 0; w < words.length; w++) {
        // 0 for a word in the first key (the heading), more further down.
        var found = fields.findIndex(function(f) { return f.indexOf(words[w]) >= 0; });
        if (found < 0) return;
        score = Math.max(score, found / keys.length);
      }
      results.push({item: entry, refIndex: index, score: score});
    });
    results.sort(function(a, b) { return a.score - b.score || a.refIndex - b.refIndex; });
    var limit = options && options.limit;
    return limit ? results.slice(0, limit) : results;
  };
  window.Fuse = Fuse;

  /* mark.js: wrap the searched words in <mark> ----------------------------- */
  function Mark(selector) {
    this.root = document.querySelector(selector);
  }
  Mark.prototype.mark = function(text) {
    var words = String(text).toLowerCase().split(/\s+/).filter(Boolean);
    if (!this.root || !words.length) return;
    var pattern = new RegExp(words.map(function(w) {
      return w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }).join('|'), 'gi');
    var walker = document.createTreeWalker(this.root, NodeFilter.SHOW_TEXT);
    var nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function(node) {
      var value = node.nodeValue;
      pattern.lastIndex = 0;
      if (!pattern.test(value)) return;
      var fragment = document.createDocumentFragment();
      var last = 0;
      value.replace(pattern, function(match, offset) {
        fragment.appendChild(document.createTextNode(value.slice(last, offset)));
        var mark = document.createElement('mark');
        mark.textContent = match;
        fragment.appendChild(mark);
        last = offset + match.length;
      });
      fragment.appendChild(document.createTextNode(value.slice(last)));
      node.parentNode.replaceChild(fragment, node);
    });
  };
  window.Mark = Mark;

  /* autocomplete.js: a dropdown of suggestions under the search box ------- */
  $.fn.autocomplete = function(options, datasets) {
    var minLength = (options && options.minLength) || 1;
    var dataset = datasets[0];
    return this.each(function() {
      var $input = $(this);
      var $wrapper = $('<span class="algolia-autocomplete"></span>')
        .css({position: 'relative', display: 'inline-block'});
      var $menu = $('<div class="aa-dropdown-menu" role="listbox"></div>')
        // Right-aligned: the box sits at the right end of the navbar.
        .css({position: 'absolute', top: '100%', right: 0, zIndex: 100, display: 'none'});
      var $list = $('<div class="aa-suggestions"></div>');
      $menu.append($('<div class="aa-dataset-content"></div>').append($list));
      $input.wrap($wrapper).after($menu);
      var suggestions = [];

      function close() { $menu.hide(); }
      function select(index) {
        close();
        $input.trigger('autocomplete:selected', [suggestions[index]]);
      }
      function show(items) {
        suggestions = items;
        $list.empty();
        items.forEach(function(item, index) {
          $('<div class="aa-suggestion" role="option"></div>')
            .html(dataset.templates.suggestion(item))
            .on('mousedown', function(event) { event.preventDefault(); select(index); })
            .appendTo($list);
        });
        $menu.toggle(items.length > 0);
      }

      $input.on('input', function() {
        var query = $input.val();
        if (query.length < minLength) return close();
        dataset.source(query, function(items) {
          if ($input.val() === query) show(items);
        });
      });
      $input.on('keydown', function(event) {
        var $items = $list.children();
        var current = $items.index($items.filter('.aa-cursor'));
        if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
          event.preventDefault();
          var next = current + (event.key === 'ArrowDown' ? 1 : -1);
          next = (next + $items.length) % $items.length;
          $items.removeClass('aa-cursor').eq(next).addClass('aa-cursor');
        } else if (event.key === 'Enter' && $items.length) {
          event.preventDefault();
          select(Math.max(current, 0));
        } else if (event.key === 'Escape') {
          close();
        }
      });
      $input.on('blur', close);
    });
  };
})(window.jQuery);
