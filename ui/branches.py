"""Version arrows and fork links under messages: links (see render.message_footer) that a page script turns into
an event carrying "MESSAGE_ID:VERB:NONCE" in a hidden textbox, since Chatbot messages cannot hold buttons.
"""

# Runs once at page load (Blocks.load js=): one capturing listener for the whole page.
BRANCH_LINKS_JS = """() => {
    if (window.__branchLinks) return;
    window.__branchLinks = true;
    document.addEventListener('click', (event) => {
        const link = event.target.closest && event.target.closest('#chat a[href*="#msg-"]');
        if (!link) return;
        const match = link.getAttribute('href').match(/#msg-(\\d+)-(prev|next|fork)$/);
        if (!match) return;
        event.preventDefault();
        event.stopPropagation();
        const box = document.querySelector('#branch-action textarea, #branch-action input');
        box.value = `${match[1]}:${match[2]}:${Date.now()}`;
        box.dispatchEvent(new Event('input', {bubbles: true}));
    }, true);
}"""
